// The benchmark report: collects the medians of every benchmark as they are
// reported, printing only how far the run has got (the detail goes to the
// JSON file), then prints a summary table (operation x configuration ->
// median, ratio against the baseline algorithm, ratio against the physical
// limit, the target and whether this run met it) under a one-line
// description of the machine, writes it as Markdown, and draws two pictures
// with gnuplot.
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace iopt_bench {

struct measured {
  double seconds = 0; // median real time of one iteration
  double items = 0;   // items per iteration (0 if not counted)
  double bytes_per_second = 0;
  std::map<std::string, double> counters;
};

class summary_reporter : public benchmark::BenchmarkReporter {
public:
  // `benchmarks`: how many the run has (for the progress line).
  explicit summary_reporter(std::size_t benchmarks);

  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;

  // Prints the table and writes summary.md, the plot data and pictures into `dir`.
  void finish(const std::string& dir, bool quick) const;

private:
  std::optional<measured> find(const std::string& name) const;
  void progress(const std::string& name);

  std::size_t benchmarks_;
  std::size_t done_ = 0;
  bool terminal_;
  std::set<std::string> seen_;
  std::map<std::string, measured> results_;
  std::map<std::string, measured> single_runs_;
  // The least and greatest bytes per second of a benchmark's repetitions,
  // where it asked for them (bench_support.hpp, with_spread).
  std::map<std::string, std::pair<double, double>> spread_;
};

} // namespace iopt_bench
