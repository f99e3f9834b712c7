// The benchmark program: Google Benchmark with iopt's summary report at the
// end. Extra flags: --iopt_report_dir=DIR (where summary.md and the pictures
// go; default: the current directory) and --iopt_quick (say in the report
// that the figures come from a run too short to mean anything).
#include "report.hpp"

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace {

// Throws away what it is given: the listing that counts the benchmarks.
class silent_reporter : public benchmark::BenchmarkReporter {
public:
  silent_reporter() { SetOutputStream(&sink_); }
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}

private:
  std::ostringstream sink_;
};

// Reads the command line's flags again, with `flag` added at the end.
void initialize_with(int argc, char** argv, const char* flag) {
  std::vector<char*> args(argv, argv + argc);
  std::string extra = flag;
  args.push_back(extra.data());
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
}

// How many benchmarks the command line selects: Google Benchmark lists them
// (and runs none) when asked to, and says how many it listed. The flags are
// read again afterwards with the listing switched off.
std::size_t count_benchmarks(int argc, char** argv) {
  initialize_with(argc, argv, "--benchmark_list_tests=true");
  silent_reporter silent;
  const std::size_t count = benchmark::RunSpecifiedBenchmarks(&silent);
  initialize_with(argc, argv, "--benchmark_list_tests=false");
  return count;
}

} // namespace

int main(int argc, char** argv) {
  std::string dir = ".";
  bool quick = false;
  bool listing = false; // --benchmark_list_tests: list, run nothing, report nothing
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--iopt_report_dir=", 18) == 0) {
      dir = argv[i] + 18;
      continue;
    }
    if (std::strcmp(argv[i], "--iopt_quick") == 0) {
      quick = true;
      continue;
    }
    if (std::strncmp(argv[i], "--benchmark_list_tests", 22) == 0)
      listing = std::strcmp(argv[i], "--benchmark_list_tests=false") != 0;
    argv[kept++] = argv[i];
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  if (listing) {
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
  }
  // Initialize took the flags it knows out of argv; they stay set.
  iopt_bench::summary_reporter reporter(count_benchmarks(argc, argv));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.finish(dir, quick);
  benchmark::Shutdown();
  return 0;
}
