// The benchmark report: collects the medians of every benchmark as they are
// reported, then prints a summary table (operation x configuration -> median,
// ratio against the baseline algorithm, ratio against the physical limit)
// under a one-line description of the machine, writes it as Markdown, and
// draws two pictures with gnuplot.
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace iopt_bench {

struct measured {
  double seconds = 0; // median real time of one iteration
  double items = 0;   // items per iteration (0 if not counted)
  double bytes_per_second = 0;
  std::map<std::string, double> counters;
};

class summary_reporter : public benchmark::ConsoleReporter {
public:
  void ReportRuns(const std::vector<Run>& runs) override;

  // Prints the table and writes summary.md, the plot data and pictures into `dir`.
  void finish(const std::string& dir, bool quick) const;

private:
  std::optional<measured> find(const std::string& name) const;
  std::map<std::string, measured> results_;
  std::map<std::string, measured> single_runs_;
};

} // namespace iopt_bench
