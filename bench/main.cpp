// The benchmark program: Google Benchmark with iopt's summary report at the
// end. Extra flags: --iopt_report_dir=DIR (where summary.md and the pictures
// go; default: the current directory) and --iopt_quick (say in the report
// that the figures come from a run too short to mean anything).
#include "report.hpp"

#include <cstring>
#include <string>

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
  iopt_bench::summary_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.finish(dir, quick);
  benchmark::Shutdown();
  return 0;
}
