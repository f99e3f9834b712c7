#include "report.hpp"
#include "bench_support.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

namespace iopt_bench {

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  return "unknown CPU";
}

std::string compiler() {
#if defined(__clang__)
  return "Clang " __clang_version__;
#elif defined(__GNUC__)
  return "GCC " __VERSION__;
#else
  return "unknown compiler";
#endif
}

std::string machine_line() {
  std::ostringstream s;
  s << cpu_model() << ", " << std::thread::hardware_concurrency() << " cores, " << compiler()
    << ", "
#ifdef NDEBUG
    << "release build"
#else
    << "debug build"
#endif
      ;
  return s.str();
}

std::string duration(double seconds) {
  std::ostringstream s;
  s << std::setprecision(3);
  if (seconds < 1e-6)
    s << seconds * 1e9 << " ns";
  else if (seconds < 1e-3)
    s << seconds * 1e6 << " us";
  else if (seconds < 1)
    s << seconds * 1e3 << " ms";
  else
    s << seconds << " s";
  return s.str();
}

std::string ratio(double r) {
  if (!(r > 0) || !std::isfinite(r))
    return "-";
  std::ostringstream s;
  if (r >= 1e5)
    s << std::scientific << std::setprecision(1) << r << "x";
  else
    s << std::fixed << std::setprecision(r < 10 ? 2 : 0) << r << "x";
  return s.str();
}

struct row {
  std::string operation, configuration, median, per, vs_baseline, vs_limit, note;
};

const auto& configs = iopt_bench::named_config_names;

} // namespace

void summary_reporter::ReportRuns(const std::vector<Run>& runs) {
  ConsoleReporter::ReportRuns(runs);
  for (const Run& r : runs) {
    if (r.error_occurred)
      continue;
    const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
    if (r.run_type == Run::RT_Aggregate && !median)
      continue;
    measured m;
    m.seconds = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
    for (const auto& [name, counter] : r.counters)
      m.counters[name] = counter.value;
    // Google Benchmark computes rates against CPU time.
    const double cpu_seconds =
        r.GetAdjustedCPUTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
    if (auto it = m.counters.find("items_per_second"); it != m.counters.end())
      m.items = it->second * cpu_seconds;
    if (auto it = m.counters.find("bytes_per_second"); it != m.counters.end())
      m.bytes_per_second = it->second;
    (median ? results_ : single_runs_)[r.run_name.str()] = m;
  }
}

std::optional<measured> summary_reporter::find(const std::string& name) const {
  if (auto it = results_.find(name); it != results_.end())
    return it->second;
  if (auto it = single_runs_.find(name); it != single_runs_.end())
    return it->second; // a run without repetitions (the quick variant)
  return std::nullopt;
}

void summary_reporter::finish(const std::string& dir, bool quick) const {
  std::vector<row> rows;
  // One row: `name` measured, optionally against a baseline and a limit.
  auto add = [&](const std::string& operation, const std::string& config, const std::string& name,
                 const std::string& baseline, const std::string& limit,
                 const std::string& note = "", double baseline_scale = 1.0) {
    const auto m = find(name);
    if (!m)
      return;
    row r{operation, config, duration(m->seconds), "", "-", "-", note};
    if (m->bytes_per_second > 0) {
      std::ostringstream s;
      s << std::fixed << std::setprecision(1) << m->bytes_per_second / 1e9 << " GB/s";
      r.per = s.str();
    }
    // A baseline timed in pairs with the operation carries their ratio.
    if (const auto b = baseline.empty() ? std::nullopt : find(baseline)) {
      const auto paired = b->counters.find("paired_ratio");
      r.vs_baseline = ratio(paired != b->counters.end() ? paired->second * baseline_scale
                                                        : b->seconds * baseline_scale / m->seconds);
    }
    if (const auto l = limit.empty() ? std::nullopt : find(limit))
      r.vs_limit = ratio(l->seconds / m->seconds);
    rows.push_back(r);
  };
  auto memset_of = [&](const std::string& name) -> std::string {
    const auto m = find(name);
    if (!m || m->items < 1)
      return "";
    return "BM_memset_entries/" + std::to_string(static_cast<long long>(std::llround(m->items)));
  };

  for (const char* c : configs) {
    const std::string t = std::string("<iopt::") + c + ">";
    add("map one page", c, "BM_map_one" + t, "", "");
    add("translate one IOBA", c, "BM_translate_one" + t, "", "");
    for (const char* n : {"512", "65536"})
      add(std::string("map_range, ") + n + " pages", c, "BM_map_range" + t + "/" + n,
          "BM_baseline_per_entry_walk" + t + "/" + n, std::string("BM_memset_entries/") + n);
    add("clear a full 2 GiB window", c, "BM_clear_2g_window" + t, "",
        memset_of("BM_clear_2g_window" + t));
    add("H_PUT_TCE, fast path", c, "BM_h_put_tce_fast" + t, "", "");
    add("H_PUT_TCE_INDIRECT, 512", c, "BM_h_put_tce_indirect_512" + t,
        "BM_h_put_tce_512_singles" + t, "", "contiguous pages; baseline: 512 x H_PUT_TCE");
    add("H_PUT_TCE_INDIRECT, 512 scattered", c, "BM_h_put_tce_indirect_512_scattered" + t,
        "BM_h_put_tce_512_singles_scattered" + t, "",
        "no page follows the one before; same baseline");
    add("H_STUFF_TCE, clear 2^20", c, "BM_h_stuff_tce_clear_1m" + t, "",
        "BM_memset_entries/1048576");
  }
  // The naive replay is measured on 2^24 pages; its cost per page times 2^31.
  add("replay, empty 128 TiB window", "config_huge_window", "BM_replay_empty_window/31",
      "BM_baseline_naive_replay_empty/24", "",
      "baseline: naive, extrapolated from 2^24 to 2^31 pages", std::pow(2.0, 31 - 24));
  add("replay, 1 GiB mapped (1 event)", "config_huge_window", "BM_replay_1g_mapped",
      "BM_baseline_naive_replay_1g_range", "BM_scan_entries/16384",
      "naive: 16384 events; limit: scan of the leaf");
  add("iterate runs, 1 GiB contiguous", "config_huge_window",
      "BM_iterate_1g_contiguous<iopt::config_huge_window>", "", "BM_scan_entries/16384");
  for (const char* n : {"1", "16", "256", "4096"})
    add(std::string("prereg lookup among ") + n, "-", std::string("BM_prereg_lookup/") + n,
        std::string("BM_baseline_linked_list_lookup/") + n, "", "baseline: linked list (kernel)");
  add("register+unregister 1 GiB (mlock)", "-", "BM_prereg_register_unregister_1g_posix",
      "BM_baseline_mlock_munlock_1g", "", "baseline: plain mlock+munlock");
  add("create+remove 128 TiB window", "config_huge_window", "BM_create_remove_128t_window", "", "");
  // The container, 1 GiB of 64 KiB pages (16384 TCEs), in v2 and v1 over
  // contiguous and scattered frames.
  for (const char* v : {"v2_contiguous", "v2_scattered", "v1_contiguous", "v1_scattered"}) {
    const std::string at = std::string("/") + v;
    const bool contiguous = std::string(v).find("contiguous") != std::string::npos;
    add(std::string("map_dma 1 GiB, one call, ") + v, "config_huge_window",
        "BM_map_dma_1g_one_call" + at + "/manual_time",
        "BM_map_dma_1g_page_calls" + at + "/manual_time", "BM_memset_entries/16384",
        contiguous ? "target >= 0.3x memset, >= 20x 16384 page calls"
                   : "target >= 20x 16384 page calls");
    add(std::string("unmap_dma 1 GiB, ") + v, "config_huge_window",
        "BM_unmap_dma_1g" + at + "/manual_time", "", "BM_memset_entries/16384",
        "target >= 0.3x memset");
    add(std::string("remove window, 1 GiB mapped, ") + v, "config_huge_window",
        "BM_teardown_window_1g_mapped" + at + "/manual_time", "", "BM_memset_entries/16384",
        "target >= 0.3x memset");
  }
  add("register+map 1 GiB of THP (posix)", "config_4k", "BM_posix_register_map_1g_thp/manual_time",
      "BM_baseline_mlock_pagemap_1g_thp/manual_time", "",
      "baseline: mlock + one pagemap read; target >= 0.7x");
  if (const auto l = find("BM_listener_add_remove_events")) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(0) << l->items / l->seconds << " events/s";
    rows.push_back({"listener add/remove", "64K granule", duration(l->seconds / l->items), s.str(),
                    "-", "-", "per event, 10^5 events"});
  }

  std::ostringstream md;
  md << "Machine: " << machine_line() << (quick ? " (quick run: figures are not meaningful)" : "")
     << "\n\n";
  md << "| operation | configuration | median | TCE bytes/s | vs baseline | vs physical limit | "
        "note |\n";
  md << "|---|---|---:|---:|---:|---:|---|\n";
  for (const row& r : rows)
    md << "| " << r.operation << " | " << r.configuration << " | " << r.median << " | " << r.per
       << " | " << r.vs_baseline << " | " << r.vs_limit << " | " << r.note << " |\n";
  std::printf("\n%s\n", md.str().c_str());
  std::ofstream(dir + "/summary.md") << md.str();

  // (a) replay time against window size; (b) map_range throughput against run length.
  {
    std::ofstream mine(dir + "/replay_iopt.dat"), naive(dir + "/replay_naive.dat"),
        extrapolated(dir + "/replay_naive_extrapolated.dat");
    for (auto* f : {&mine, &naive, &extrapolated})
      *f << std::scientific << std::setprecision(4) << "# log2(pages) seconds\n";
    double naive_per_page = 0;
    if (const auto n = find("BM_baseline_naive_replay_empty/24"))
      naive_per_page = n->seconds / std::pow(2.0, 24);
    for (int log2 = 12; log2 <= 31; ++log2) {
      if (const auto m = find("BM_replay_empty_window/" + std::to_string(log2)))
        mine << log2 << ' ' << m->seconds << '\n';
      if (const auto m = find("BM_baseline_naive_replay_empty/" + std::to_string(log2)))
        naive << log2 << ' ' << m->seconds << '\n';
      if (naive_per_page > 0)
        extrapolated << log2 << ' ' << naive_per_page * std::pow(2.0, log2) << '\n';
    }
    std::ofstream sweep(dir + "/map_range.dat");
    sweep << "# pages iopt_GBps memset_GBps\n";
    for (long long pages = 512; pages <= (1 << 21); pages *= 2) {
      const auto m = find("BM_map_range_sweep/" + std::to_string(pages));
      const auto limit = find("BM_memset_entries/" + std::to_string(pages));
      if (m && limit)
        sweep << pages << ' ' << m->bytes_per_second / 1e9 << ' ' << limit->bytes_per_second / 1e9
              << '\n';
    }
  }
  std::ofstream gp(dir + "/report.gp");
  gp << "set terminal svg size 720,420 dynamic font 'sans,11' background rgb 'white'\n"
        "set grid\nset key top left\n"
        "set output 'replay.svg'\n"
        "set title 'Replay of an empty window (64 KiB pages): iopt against the naive per-page "
        "replay'\n"
        "set xlabel 'window size (log2 of pages; 31 = 128 TiB)'\nset ylabel 'time (s)'\nset "
        "logscale y\n"
        "set format y '10^{%L}'\n"
        "plot 'replay_iopt.dat' using 1:2 with linespoints lw 2 title 'iopt (structure-aware)', "
        "'replay_naive.dat' using 1:2 with points pt 7 ps 1.2 title 'naive, measured', "
        "'replay_naive_extrapolated.dat' using 1:2 with lines dt 2 title 'naive, extrapolated'\n"
        "set output 'map_range.svg'\nunset logscale y\nset format y '%g'\nset logscale x 2\nset "
        "format x '2^{%L}'\nset key top right\n"
        "set title 'map\\_range throughput against run length (huge window, 64 KiB pages)'\n"
        "set xlabel 'pages in one call'\nset ylabel 'GB/s of TCEs written'\nset yrange [0:*]\n"
        "plot 'map_range.dat' using 1:2 with linespoints lw 2 title 'iopt map\\_range', "
        "'' using 1:3 with linespoints title 'memset of the same bytes'\n";
  gp.close();
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0) {
    const std::string cmd = "cd '" + dir + "' && gnuplot report.gp";
    if (std::system(cmd.c_str()) == 0)
      std::printf("Pictures: %s/replay.svg, %s/map_range.svg\n", dir.c_str(), dir.c_str());
  } else {
    std::printf("gnuplot not found: the pictures were not drawn (apt-get install gnuplot-nox)\n");
  }
  std::printf("Summary: %s/summary.md\n", dir.c_str());
}

} // namespace iopt_bench
