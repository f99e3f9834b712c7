#include "report.hpp"
#include "bench_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include <unistd.h>

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

// Three significant digits, cut rather than rounded, so that a ratio just
// under a target never shows as the target itself (4.9995 is "4.99x").
std::string ratio(double r) {
  if (!(r > 0) || !std::isfinite(r))
    return "-";
  const int magnitude = static_cast<int>(std::floor(std::log10(r)));
  const double unit = std::pow(10.0, magnitude - 2);
  const double cut = std::floor(r / unit * (1 + 1e-12)) * unit;
  std::ostringstream s;
  if (magnitude >= 5)
    s << std::scientific << std::setprecision(2) << cut << "x";
  else
    s << std::fixed << std::setprecision(std::max(0, 2 - magnitude)) << cut << "x";
  return s.str();
}

// What a row is held to: at least `at_least` in its baseline or its limit
// column (the issue or README that set it says why).
struct goal {
  enum class column : std::uint8_t { baseline, limit } against;
  double at_least;
};

struct row {
  std::string operation, configuration, median, per, vs_baseline, vs_limit, target, met, note;
};

const auto& configs = iopt_bench::named_config_names;
using iopt_bench::map_range_run_lengths;

} // namespace

summary_reporter::summary_reporter(std::size_t benchmarks)
    : benchmarks_(benchmarks), terminal_(::isatty(STDOUT_FILENO) != 0) {}

// One line about the machine and the run, in place of Google Benchmark's
// context (whose warning that the Debian package of the benchmark library
// was built as debug concerns that library, not iopt's release build).
bool summary_reporter::ReportContext(const Context&) {
  std::printf("%s\n%zu benchmarks; the detail of each goes to the JSON file "
              "(--benchmark_out), the summary follows at the end.\n",
              machine_line().c_str(), benchmarks_);
  std::fflush(stdout);
  return true;
}

// On a terminal, one line rewritten in place; into a file, a line at every
// tenth of the run.
void summary_reporter::progress(const std::string& name) {
  ++done_;
  const std::size_t total = std::max(benchmarks_, done_);
  if (terminal_) {
    std::printf("\r\033[K[%zu/%zu] %s", done_, total, name.c_str());
    if (done_ == total)
      std::printf("\n");
  } else if (done_ * 10 / total != (done_ - 1) * 10 / total || done_ == total) {
    std::printf("[%zu/%zu] %3zu%% done, last: %s\n", done_, total, done_ * 100 / total,
                name.c_str());
  }
  std::fflush(stdout);
}

void summary_reporter::ReportRuns(const std::vector<Run>& runs) {
  for (const Run& r : runs)
    if (r.error_occurred)
      std::fprintf(stderr, "%s%s: %s\n", terminal_ ? "\n" : "", r.benchmark_name().c_str(),
                   r.error_message.c_str());
  // A benchmark may come in two calls (its repetitions, then their
  // aggregates): it counts once.
  if (!runs.empty() && seen_.insert(runs.front().run_name.str()).second)
    progress(runs.front().run_name.str());
  for (const Run& r : runs) {
    if (r.error_occurred)
      continue;
    const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
    if (r.run_type == Run::RT_Aggregate &&
        (r.aggregate_name == "min" || r.aggregate_name == "max")) {
      if (const auto it = r.counters.find("bytes_per_second"); it != r.counters.end())
        (r.aggregate_name == "min" ? spread_[r.run_name.str()].first
                                   : spread_[r.run_name.str()].second) = it->second.value;
      continue;
    }
    if (r.run_type == Run::RT_Aggregate && !median)
      continue;
    measured m;
    m.seconds = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
    for (const auto& [name, counter] : r.counters)
      m.counters[name] = counter.value;
    // Google Benchmark computes rates against CPU time, or against the real
    // time where a benchmark says to use it or times itself (manual time).
    const double rate_seconds =
        (r.run_name.time_type.empty() ? r.GetAdjustedCPUTime() : r.GetAdjustedRealTime()) /
        benchmark::GetTimeUnitMultiplier(r.time_unit);
    if (auto it = m.counters.find("items_per_second"); it != m.counters.end())
      m.items = it->second * rate_seconds;
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
  // One row: `name` measured, optionally against a baseline and a limit,
  // and held to `goals`.
  auto add = [&](const std::string& operation, const std::string& config, const std::string& name,
                 const std::string& baseline, const std::string& limit,
                 std::initializer_list<goal> goals = {}, const std::string& note = "",
                 double baseline_scale = 1.0) {
    const auto m = find(name);
    if (!m)
      return;
    row r{operation, config, duration(m->seconds), "", "-", "-", "", "", note};
    if (m->bytes_per_second > 0) {
      std::ostringstream s;
      s << std::fixed << std::setprecision(1) << m->bytes_per_second / 1e9 << " GB/s";
      r.per = s.str();
    }
    double vs_baseline = 0, vs_limit = 0;
    // A baseline timed in pairs with the operation carries their ratio.
    if (const auto b = baseline.empty() ? std::nullopt : find(baseline)) {
      const auto paired = b->counters.find("paired_ratio");
      vs_baseline = paired != b->counters.end() ? paired->second * baseline_scale
                                                : b->seconds * baseline_scale / m->seconds;
      r.vs_baseline = ratio(vs_baseline);
    }
    // So does a limit timed in pairs with it (named as the operation itself).
    if (const auto l = limit.empty() ? std::nullopt : find(limit)) {
      const auto paired = limit == name ? l->counters.find("paired_ratio") : l->counters.end();
      vs_limit = paired != l->counters.end() ? paired->second : l->seconds / m->seconds;
      r.vs_limit = ratio(vs_limit);
    }
    bool met = true;
    for (const goal& g : goals) {
      const bool on_baseline = g.against == goal::column::baseline;
      std::ostringstream t;
      t << (r.target.empty() ? "" : ", ") << ">= " << std::setprecision(3) << g.at_least << "x "
        << (on_baseline ? "baseline" : "limit");
      r.target += t.str();
      met = met && (on_baseline ? vs_baseline : vs_limit) >= g.at_least;
    }
    if (goals.size() != 0)
      r.met = met ? "yes" : "**no**";
    rows.push_back(r);
  };
  auto memset_of = [&](const std::string& name) -> std::string {
    const auto m = find(name);
    if (!m || m->items < 1)
      return "";
    return "BM_memset_entries/" + std::to_string(static_cast<long long>(std::llround(m->items)));
  };
  constexpr auto baseline = goal::column::baseline;
  constexpr auto limit = goal::column::limit;

  // The table and the hypercalls on every named configuration, held to the
  // goals of the hot-path work (README, "Benchmarks").
  for (const char* c : configs) {
    const std::string t = std::string("<iopt::") + c + ">";
    add("map one page", c, "BM_map_one" + t, "BM_flat_array_store" + t, "", {{baseline, 0.5}},
        "baseline: a store to a flat array at the same index");
    add("translate one IOBA", c, "BM_translate_one" + t, "BM_flat_array_load" + t, "",
        {{baseline, 0.5}}, "baseline: a load from a flat array at the same index");
    for (const char* n : {"512", "65536"})
      add(std::string("map_range, ") + n + " pages", c, "BM_map_range" + t + "/" + n,
          "BM_baseline_per_entry_walk" + t + "/" + n, std::string("BM_memset_entries/") + n,
          {{limit, 0.8}});
    const std::string clear = "BM_clear_2g_window" + t + "/manual_time";
    const std::string clear_limit = memset_of(clear);
    if (!find(clear_limit))
      add("clear a full 2 GiB window", c, clear, "", "", {},
          "too few entries for a memset of the same size");
    else
      add("clear a full 2 GiB window", c, clear, "", clear_limit, {{limit, 0.9}});
    add("H_PUT_TCE, fast path", c, "BM_h_put_tce_fast" + t, "", "");
    add("H_PUT_TCE_INDIRECT, 512", c, "BM_h_put_tce_indirect_512" + t,
        "BM_h_put_tce_512_singles" + t, "", {{baseline, 10}},
        "contiguous pages, the list read in place; baseline: 512 x H_PUT_TCE");
    add("H_PUT_TCE_INDIRECT, 512, list copied", c, "BM_h_put_tce_indirect_512_copied" + t,
        "BM_h_put_tce_512_singles" + t, "", {},
        "the same through an accessor with no view; same baseline");
    add("H_PUT_TCE_INDIRECT, 512 scattered", c, "BM_h_put_tce_indirect_512_scattered" + t,
        "BM_h_put_tce_512_singles_scattered" + t, "", {{baseline, 3}},
        "no page follows the one before; same baseline");
    add("H_STUFF_TCE, clear 2^20", c, "BM_h_stuff_tce_clear_1m" + t, "",
        "BM_memset_entries/1048576");
  }
  // The naive replay is measured on 2^24 pages; its cost per page times 2^31.
  add("replay, empty 128 TiB window", "config_huge_window", "BM_replay_empty_window/31",
      "BM_baseline_naive_replay_empty/24", "", {},
      "baseline: naive, extrapolated from 2^24 to 2^31 pages", std::pow(2.0, 31 - 24));
  add("replay, 1 GiB mapped (1 event)", "config_huge_window", "BM_replay_1g_mapped",
      "BM_baseline_naive_replay_1g_range", "BM_scan_entries/16384", {{limit, 0.9}},
      "naive: 16384 events; limit: scan of the leaf");
  add("iterate runs, 1 GiB contiguous", "config_huge_window",
      "BM_iterate_1g_contiguous<iopt::config_huge_window>", "", "BM_scan_entries/16384");
  if (const auto t = find("BM_iterate_1g_contiguous<iopt::config_huge_window>")) {
    const auto bytes = t->counters.find("table_bytes");
    const auto ratio_to_leaves = t->counters.find("memory_ratio");
    if (bytes != t->counters.end() && ratio_to_leaves != t->counters.end()) {
      std::ostringstream held, note;
      held << std::setprecision(3) << bytes->second / (1 << 20) << " MiB";
      note << ratio(ratio_to_leaves->second)
           << " the leaf entries strictly needed (16384 x 8 bytes); levels on demand";
      rows.push_back({"table memory, 1 GiB mapped in a 128 TiB window", "config_huge_window",
                      held.str(), "", "-", "-", "", "", note.str()});
    }
  }
  // Migration (issue 18's goals). QEMU's dense copy is measured on 2^24
  // entries; its cost per entry times the window's 2^31.
  if (const auto snap = find("BM_snapshot_1g_in_128t")) {
    std::ostringstream note;
    note << "stream " << snap->counters.at("stream_bytes") << " bytes for "
         << snap->counters.at("entry_bytes")
         << " bytes of set entries; baseline: QEMU's dense 16 GiB, extrapolated from 2^24 entries";
    add("snapshot, 1 GiB mapped in a 128 TiB window", "config_huge_window",
        "BM_snapshot_1g_in_128t", "BM_baseline_dense_table_copy/24", "BM_scan_entries/16384",
        {{baseline, 1e4}, {limit, 0.5}}, note.str(), std::pow(2.0, 31 - 24));
  }
  add("restore it into an empty window", "config_huge_window", "BM_restore_1g_in_128t/manual_time",
      "", "BM_memset_entries/16384", {{limit, 0.5}});
  for (const char* c : {"config_huge_window", "config_4k"})
    for (const char* n : {"100", "1000", "10000"}) {
      const std::string name = std::string("BM_snapshot_changes<") + c + ">/" + n + "/manual_time";
      std::string note =
          "1 GiB mapped; baseline: a full snapshot of the same table, timed in pairs";
      if (const auto m = find(name))
        note += "; " + std::to_string(std::llround(m->counters.at("increment_bytes"))) + " bytes";
      add(std::string("increment after ") + n + " scattered changes", c, name, name, "",
          std::string(n) == "1000" ? std::initializer_list<goal>{{baseline, 100}}
                                   : std::initializer_list<goal>{},
          note);
    }
  for (const char* c : {"config_4k", "config_4k_on_demand"}) {
    const std::string name = std::string("BM_import_dense_2g_1000<") + c + ">/manual_time";
    add("dense import, 2 GiB of 4 KiB pages, 1000 set", c, name, "", name, {{limit, 0.5}},
        std::string("limit: a scan of the same array after making the same empty table, timed in "
                    "pairs; ") +
            (std::string(c) == "config_4k" ? "flat table, its 4 MiB leaf made with it"
                                           : "levels on demand (a VMM's guest view)"));
  }
  // One region: within 1.5x of the kernel's list; 4096 regions: 20x faster.
  // Lookups are timed in rounds of 4096 (the median column is per round).
  for (const char* n : {"1", "16", "256", "4096"})
    add(std::string("prereg lookup among ") + n + ", 4096 lookups", "-",
        std::string("BM_prereg_lookup/") + n + "/manual_time",
        std::string("BM_baseline_linked_list_lookup/") + n + "/manual_time", "",
        std::string(n) == "1"      ? std::initializer_list<goal>{{baseline, 1 / 1.5}}
        : std::string(n) == "4096" ? std::initializer_list<goal>{{baseline, 20}}
                                   : std::initializer_list<goal>{},
        "baseline: linked list (kernel)");
  add("register+unregister 1 GiB (mlock)", "-", "BM_prereg_register_unregister_1g_posix",
      "BM_baseline_mlock_munlock_1g", "", {}, "baseline: plain mlock+munlock");
  add("create+remove 128 TiB window", "config_huge_window", "BM_create_remove_128t_window", "", "");
  // The container, 1 GiB of 64 KiB pages (16384 TCEs), in v2 and v1 over
  // contiguous and scattered frames.
  for (const char* v : {"v2_contiguous", "v2_scattered", "v1_contiguous", "v1_scattered"}) {
    const std::string at = std::string("/") + v;
    const bool contiguous = std::string(v).find("contiguous") != std::string::npos;
    add(std::string("map_dma 1 GiB, one call, ") + v, "config_huge_window",
        "BM_map_dma_1g_one_call" + at + "/manual_time",
        "BM_map_dma_1g_page_calls" + at + "/manual_time", "BM_memset_entries/16384",
        contiguous ? std::initializer_list<goal>{{baseline, 20}, {limit, 0.3}}
                   : std::initializer_list<goal>{{baseline, 20}},
        "baseline: 16384 page-sized calls");
    add(std::string("unmap_dma 1 GiB, ") + v, "config_huge_window",
        "BM_unmap_dma_1g" + at + "/manual_time", "", "BM_memset_entries/16384", {{limit, 0.3}});
    add(std::string("remove window, 1 GiB mapped, ") + v, "config_huge_window",
        "BM_teardown_window_1g_mapped" + at + "/manual_time", "", "BM_memset_entries/16384",
        {{limit, 0.3}});
  }
  add("register+map 1 GiB of THP (posix)", "config_4k", "BM_posix_register_map_1g_thp/manual_time",
      "BM_baseline_mlock_pagemap_1g_thp/manual_time", "", {{baseline, 0.7}},
      "baseline: mlock + one pagemap read");
  if (const auto l = find("BM_listener_add_remove_events")) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(0) << l->items / l->seconds << " events/s";
    rows.push_back({"listener add/remove", "64K granule", duration(l->seconds / l->items), s.str(),
                    "-", "-", "", "", "per event, 10^5 events"});
  }

  std::ostringstream md;
  md << "Machine: " << machine_line() << (quick ? " (quick run: figures are not meaningful)" : "")
     << "\n\n";
  md << "| operation | configuration | median | TCE bytes/s | vs baseline | vs physical limit | "
        "target | met | note |\n";
  md << "|---|---|---:|---:|---:|---:|---|---|---|\n";
  std::size_t held = 0, missed = 0;
  for (const row& r : rows) {
    md << "| " << r.operation << " | " << r.configuration << " | " << r.median << " | " << r.per
       << " | " << r.vs_baseline << " | " << r.vs_limit << " | " << r.target << " | " << r.met
       << " | " << r.note << " |\n";
    held += r.met.empty() ? 0U : 1U;
    missed += r.met == "yes" || r.met.empty() ? 0U : 1U;
  }
  md << "\n" << held - missed << " of " << held << " rows with a target met it in this run.\n";
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
      if (naive_per_page > 0 && log2 >= 24) // from the last measured point on
        extrapolated << log2 << ' ' << naive_per_page * std::pow(2.0, log2) << '\n';
    }
    // Per configuration: run length, then median, least and greatest GB/s
    // of map_range, then the same of the per-entry walk; memset likewise.
    auto gbps = [&](const std::string& name) {
      std::ostringstream out;
      const auto m = find(name);
      if (!m || m->bytes_per_second <= 0)
        return std::string();
      const auto s = spread_.find(name);
      const auto [low, high] =
          s != spread_.end() ? s->second : std::pair{m->bytes_per_second, m->bytes_per_second};
      out << ' ' << m->bytes_per_second / 1e9 << ' ' << low / 1e9 << ' ' << high / 1e9;
      return out.str();
    };
    std::ofstream memset_sweep(dir + "/map_range_memset.dat");
    memset_sweep << "# pages GB/s (median min max)\n";
    for (const std::int64_t pages : map_range_run_lengths)
      if (const std::string m = gbps("BM_memset_entries/" + std::to_string(pages)); !m.empty())
        memset_sweep << pages << m << '\n';
    for (const char* c : configs) {
      std::ofstream sweep(dir + "/map_range_" + c + ".dat");
      sweep << "# pages map_range GB/s (median min max) per-entry walk GB/s (median min max)\n";
      for (const std::int64_t pages : map_range_run_lengths) {
        const std::string at = std::string("<iopt::") + c + ">/" + std::to_string(pages);
        const std::string iopt = gbps("BM_map_range" + at);
        const std::string walk = gbps("BM_baseline_per_entry_walk" + at);
        if (!iopt.empty() && !walk.empty())
          sweep << pages << iopt << walk << '\n';
      }
    }
  }
  std::ofstream gp(dir + "/report.gp");
  gp << "set terminal svg size 760,440 dynamic font 'sans,11' background rgb 'white'\n"
        "set grid\nset key top left\nset offsets graph 0.02, graph 0.02, graph 0.05, graph 0.02\n"
        "set output 'replay.svg'\n"
        "set title 'Replay of an empty window (64 KiB pages): iopt against the naive per-page "
        "replay'\n"
        "set xlabel 'window size (log2 of pages; 31 = 128 TiB)'\nset ylabel 'time (s)'\n"
        "set logscale y\nset format y '10^{%L}'\n"
        "plot 'replay_iopt.dat' using 1:2 with linespoints lw 2 pt 5 title 'iopt "
        "(structure-aware)', "
        "'replay_naive.dat' using 1:2 with linespoints pt 7 ps 1.3 title 'naive, measured', "
        "'replay_naive_extrapolated.dat' using 1:2 with lines dt 2 lw 2 "
        "title 'naive, extrapolated past 2^{24}'\n";
  // map_range: one colour per configuration, solid for iopt and dashed for
  // the per-entry walk, memset in black; bars from the least to the
  // greatest of the repetitions. Names are drawn as they are written
  // (noenhanced: an underscore is not a subscript).
  gp << "set output 'map_range.svg'\nset terminal svg size 900,600 dynamic font 'sans,11' "
        "background rgb 'white'\n"
        "set logscale x 2\nset format x '2^{%L}'\nset xrange [256:4194304]\n"
        "unset offsets\nset logscale y 10\nset format y '%g'\nset yrange [0.5:*]\n"
        "set key below maxrows 4 width -2\n"
        "set title 'map_range against run length, every configuration (bars: least to greatest "
        "of the repetitions)' noenhanced\n"
        "set xlabel 'pages in one call'\nset ylabel 'GB/s of TCEs written'\n"
        "plot ";
  std::size_t colour = 1;
  for (const char* c : configs) {
    const std::string file = std::string("'map_range_") + c + ".dat'";
    gp << file << " using 1:2:3:4 with yerrorlines lw 2 pt 7 lc " << colour << " title '" << c
       << "' noenhanced, " << file << " using 1:5:6:7 with yerrorlines dt 2 pt 6 lc " << colour
       << " title '" << c << ", per-entry walk' noenhanced, ";
    ++colour;
  }
  gp << "'map_range_memset.dat' using 1:2:3:4 with yerrorlines lw 3 pt 9 lc rgb 'black' "
        "title 'memset of the same bytes'\n";
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
