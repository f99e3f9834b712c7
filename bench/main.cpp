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

// How many benchmarks the command line selects: Google Benchmark lists them
// (and runs none) when asked to, and says how many it listed. The flags are
// read again afterwards with the listing switched off.
std::size_t count_benchmarks(int argc, char** argv) {
  std::vector<char*> listing(argv, argv + argc);
  std::string list_flag = "--benchmark_list_tests=true";
  listing.push_back(list_flag.data());
  int listing_argc = static_cast<int>(listing.size());
  benchmark::Initialize(&listing_argc, listing.data());
  silent_reporter silent;
  const std::size_t count = benchmark::RunSpecifiedBenchmarks(&silent);
  std::vector<char*> running(argv, argv + argc);
  std::string run_flag = "--benchmark_list_tests=false";
  running.push_back(run_flag.data());
  int running_argc = static_cast<int>(running.size());
  benchmark::Initialize(&running_argc, running.data());
  return count;
}

} // namespace

int main(int argc, char** argv) {
  std::string dir = ".";
  bool quick = false;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--iopt_report_dir=", 18) == 0)
      dir = argv[i] + 18;
    else if (std::strcmp(argv[i], "--iopt_quick") == 0)
      quick = true;
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--benchmark_list_tests", 22) == 0 &&
        std::strcmp(argv[i], "--benchmark_list_tests=false") != 0) {
      benchmark::RunSpecifiedBenchmarks(); // lists them; nothing to report
      benchmark::Shutdown();
      return 0;
    }
  iopt_bench::summary_reporter reporter(count_benchmarks(argc, argv));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.finish(dir, quick);
  benchmark::Shutdown();
  return 0;
}
