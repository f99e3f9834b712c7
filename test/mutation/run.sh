#!/usr/bin/env bash
# The mutation self-check: applies each mutant of test/mutation/catalog.txt to
# a scratch copy of the sources, rebuilds what it touches, runs the suite and
# prints which mutants the tests killed. Slow (a rebuild per mutant), so it is
# run on demand, not in CI. See README.md, "Mutation self-check".
#
#   test/mutation/run.sh [--only M03,M07] [--scratch DIR] [--timeout SECONDS] [--jobs N]
#   test/mutation/run.sh --check     every entry's original text occurs exactly once
#   test/mutation/run.sh --list      the catalog, one mutant per line
#
# Per mutant: the hinted test's target is built and that test run first; if it
# passes, everything is built and the whole suite run. A failing or timed-out
# test kills the mutant. Exit status 0 only when every mutant was killed.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$script_dir/../.." && pwd)
catalog=$script_dir/catalog.txt
scratch=${TMPDIR:-/tmp}/iopt-mutation
only=""
timeout=300
jobs=""
mode=run

usage() {
  cat <<'EOF'
usage: test/mutation/run.sh [--only M03,M07] [--scratch DIR] [--timeout SECONDS] [--jobs N]
       test/mutation/run.sh --check | --list | --help

  --only IDS       run only these mutants (comma-separated catalog ids)
  --scratch DIR    where the sources are copied and built
                   (default: ${TMPDIR:-/tmp}/iopt-mutation; reused by later runs)
  --timeout S      per-test time limit in seconds (default 300); a test that
                   runs out of time kills its mutant
  --jobs N         parallel build jobs and parallel tests (default: the
                   build tool's own choice, tests one at a time)
  --check          check that every entry's original text occurs exactly once
                   in the repository's headers, and that its hint names a test
  --list           print the catalog: id, file, hint, description
EOF
}

# ---- the catalog tool (perl: literal text, whole lines) ----------------------

tool=$(
  cat <<'PERL'
use strict;
use warnings;

sub slurp {
  my ($path) = @_;
  open(my $fh, '<:raw', $path) or die "cannot read $path: $!\n";
  local $/;
  my $text = <$fh>;
  close $fh;
  return defined $text ? $text : '';
}

sub parse {
  my ($path) = @_;
  my (@entries, %seen, $e, $section);
  my $n = 0;
  for my $line (split /^/m, slurp($path)) {
    $n++;
    if ($line =~ /^@@[ \t]+(\S+)[ \t]*\r?$/) {
      push @entries, $e if $e;
      die "$path:$n: entry $1 appears twice\n" if $seen{$1}++;
      $e = { id => $1, line => $n, orig => '', repl => '' };
      $section = 'head';
      next;
    }
    if (!$e) {
      next if $line =~ /^[ \t]*(#.*)?\r?\n?$/;
      die "$path:$n: text before the first entry\n";
    }
    if ($section eq 'head') {
      if ($line =~ /^--- original[ \t]*$/) { $section = 'orig'; next; }
      next if $line =~ /^[ \t]*(#.*)?\n?$/;
      if ($line =~ /^(file|hint|desc):[ \t]*(.*?)[ \t]*$/) { $e->{$1} = $2; next; }
      die "$path:$n: unexpected line in the header of $e->{id}\n";
    }
    # A comment after an entry's text would silently become part of it.
    die "$path:$n: a comment inside the text of $e->{id}; comments go in an entry's header\n"
      if $line =~ /^# /;
    if ($section eq 'orig') {
      if ($line =~ /^\+\+\+ replacement[ \t]*$/) { $section = 'repl'; next; }
      $e->{orig} .= $line;
      next;
    }
    $e->{repl} .= $line;
  }
  push @entries, $e if $e;
  for my $x (@entries) {
    for my $k (qw(file hint desc)) {
      die "$path:$x->{line}: entry $x->{id} has no '$k:'\n"
        unless defined $x->{$k} && length $x->{$k};
    }
    die "$path:$x->{line}: entry $x->{id} has no original text\n" unless length $x->{orig};
    $x->{orig} .= "\n" unless $x->{orig} =~ /\n\z/;
    1 while $x->{repl} =~ s/(\A|\n)[ \t]*\n\z/$1/;   # trailing blank lines
    $x->{repl} .= "\n" if length $x->{repl} && $x->{repl} !~ /\n\z/;
    die "$path:$x->{line}: entry $x->{id} changes nothing\n" if $x->{orig} eq $x->{repl};
  }
  return @entries;
}

# Start positions of `pat` in `text` that begin a line.
sub positions {
  my ($text, $pat) = @_;
  my @at;
  for (my $pos = index($text, $pat); $pos >= 0; $pos = index($text, $pat, $pos + 1)) {
    push @at, $pos if $pos == 0 || substr($text, $pos - 1, 1) eq "\n";
  }
  return @at;
}

sub entry {
  my ($catalog, $id) = @_;
  my ($e) = grep { $_->{id} eq $id } parse($catalog);
  die "no mutant '$id' in the catalog\n" unless $e;
  return $e;
}

# The ctest names test/CMakeLists.txt declares (suites and plain add_test).
sub test_names {
  my ($root) = @_;
  my $cmake = slurp("$root/test/CMakeLists.txt");
  my %names;
  $names{$1} = 1 while $cmake =~ /^\s*iopt_add_suite\((\w+)/mg;
  $names{$1} = 1 while $cmake =~ /add_test\(NAME (\w+) /g;
  return %names;
}

my ($cmd, $catalog, @args) = @ARGV;
die "usage: tool list|count|apply|check CATALOG ...\n" unless defined $catalog;
if ($cmd eq 'list') {
  for my $e (parse($catalog)) {
    (my $desc = $e->{desc}) =~ s/\t/ /g;
    print join("\t", $e->{id}, $e->{file}, $e->{hint}, $desc), "\n";
  }
} elsif ($cmd eq 'count') {
  my ($id, $root) = @args;
  my $e = entry($catalog, $id);
  my $path = "$root/$e->{file}";
  my $n = -f $path ? scalar(positions(slurp($path), $e->{orig})) : 0;
  print "$n\n";
} elsif ($cmd eq 'apply') {
  my ($id, $root) = @args;
  my $e = entry($catalog, $id);
  my $path = "$root/$e->{file}";
  my $text = slurp($path);
  my @at = positions($text, $e->{orig});
  die "$id: the original text occurs " . scalar(@at) . " times in $e->{file}\n" unless @at == 1;
  substr($text, $at[0], length $e->{orig}) = $e->{repl};
  open(my $out, '>:raw', $path) or die "cannot write $path: $!\n";
  print $out $text;
  close $out or die "cannot write $path: $!\n";
} elsif ($cmd eq 'check') {
  my ($root) = @args;
  my %tests = test_names($root);
  my ($bad, $count) = (0, 0);
  for my $e (parse($catalog)) {
    $count++;
    my $path = "$root/$e->{file}";
    my @problems;
    if (!-f $path) {
      push @problems, "no such file";
    } else {
      my $n = scalar(positions(slurp($path), $e->{orig}));
      push @problems, "original text found $n times, not once" if $n != 1;
    }
    push @problems, "hint '$e->{hint}' is no test of test/CMakeLists.txt" unless $tests{$e->{hint}};
    push @problems, "file is not under include/iopt/" unless $e->{file} =~ m{^include/iopt/};
    printf "%-5s %-40s %s\n", $e->{id}, $e->{file}, @problems ? join('; ', @problems) : 'ok';
    $bad++ if @problems;
  }
  print "$count mutants, ", ($bad ? "$bad with problems" : "every original text occurs exactly once"), "\n";
  exit($bad ? 1 : 0);
} else {
  die "unknown command '$cmd'\n";
}
PERL
)

catalog_tool() { perl -e "$tool" -- "$@"; }

# ---- arguments ---------------------------------------------------------------

while (($# > 0)); do
  case $1 in
  --only) only=${2:?"--only needs a list of ids"}; shift 2 ;;
  --only=*) only=${1#*=}; shift ;;
  --scratch) scratch=${2:?"--scratch needs a directory"}; shift 2 ;;
  --scratch=*) scratch=${1#*=}; shift ;;
  --timeout) timeout=${2:?"--timeout needs seconds"}; shift 2 ;;
  --timeout=*) timeout=${1#*=}; shift ;;
  --jobs | -j) jobs=${2:?"--jobs needs a number"}; shift 2 ;;
  --jobs=*) jobs=${1#*=}; shift ;;
  --check) mode=check; shift ;;
  --list) mode=list; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $timeout =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --timeout wants whole seconds" >&2; exit 2; }
[[ -z $jobs || $jobs =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --jobs wants a number" >&2; exit 2; }
command -v perl >/dev/null || { echo "run.sh: perl is needed" >&2; exit 2; }

case $mode in
check) exec perl -e "$tool" -- check "$catalog" "$repo" ;;
list)
  catalog_tool list "$catalog" | while IFS=$'\t' read -r id file hint desc; do
    printf '%-4s %-40s %-18s %s\n' "$id" "$file" "$hint" "$desc"
  done
  exit 0
  ;;
esac

for tool_name in cmake ctest ninja g++; do
  command -v "$tool_name" >/dev/null || { echo "run.sh: $tool_name is needed" >&2; exit 2; }
done

# ---- the mutants to run ------------------------------------------------------

listing=$(catalog_tool list "$catalog") || { echo "run.sh: the catalog does not parse" >&2; exit 2; }
declare -a ids=() files=() hints=() descs=()
declare -A index_of=()
while IFS=$'\t' read -r id file hint desc; do
  index_of[$id]=${#ids[@]}
  ids+=("$id"); files+=("$file"); hints+=("$hint"); descs+=("$desc")
done <<<"$listing"

declare -a selected=()
if [[ -n $only ]]; then
  IFS=',' read -r -a wanted <<<"$only"
  for id in "${wanted[@]}"; do
    id=${id//[[:space:]]/}
    [[ -z $id ]] && continue
    [[ -n ${index_of[$id]+set} ]] || { echo "run.sh: no mutant '$id' in the catalog" >&2; exit 2; }
    selected+=("${index_of[$id]}")
  done
else
  for i in "${!ids[@]}"; do selected+=("$i"); done
fi
((${#selected[@]} > 0)) || { echo "run.sh: no mutant selected" >&2; exit 2; }

# ---- the scratch copy --------------------------------------------------------

mkdir -p "$scratch"
scratch=$(cd "$scratch" && pwd)
case $scratch/ in
"$repo"/*) echo "run.sh: the scratch directory must lie outside the repository" >&2; exit 2 ;;
esac
marker=$scratch/.iopt-mutation-scratch
if [[ ! -e $marker && -n $(ls -A "$scratch") ]]; then
  echo "run.sh: $scratch is not empty and was not made by this script; choose another --scratch" >&2
  exit 2
fi
touch "$marker"
build=$scratch/build
logs=$scratch/mutation-logs
mkdir -p "$build" "$logs"
report_md=$scratch/test/mutation/last_run.md

# The file a mutant changed, and its original text, until it is put back.
mutated_file=""
backup=$logs/original.bak
restore() {
  if [[ -n $mutated_file ]]; then
    cp "$backup" "$mutated_file" # a new mtime: the build redoes what the mutant touched
    mutated_file=""
  fi
}
interrupted() {
  trap - INT TERM
  restore
  echo >&2
  echo "run.sh: interrupted; the scratch copy is unmutated again" >&2
  exit 130
}
trap interrupted INT TERM
trap restore EXIT

# Copies the sources into the scratch directory: only files whose content
# differs (so the build there stays incremental), and removes files the
# repository no longer has.
copied_dirs=(include test cmake bench)
copied_files=(CMakeLists.txt CMakePresets.json README.md LICENSE)
sync_sources() {
  local rel changed=0
  declare -A in_repo=()
  while IFS= read -r rel; do
    in_repo[$rel]=1
    if ! cmp -s "$repo/$rel" "$scratch/$rel"; then
      mkdir -p "$(dirname "$scratch/$rel")"
      cp "$repo/$rel" "$scratch/$rel"
      changed=$((changed + 1))
    fi
  done < <(cd "$repo" && {
    find "${copied_dirs[@]}" -type f ! -path test/mutation/last_run.md
    printf '%s\n' "${copied_files[@]}"
  })
  while IFS= read -r rel; do
    [[ -n ${in_repo[$rel]+set} || $rel == test/mutation/last_run.md ]] || rm -f "$scratch/$rel"
  done < <(cd "$scratch" && find "${copied_dirs[@]}" -type f 2>/dev/null)
  echo "$changed"
}

build_jobs=()
test_jobs=()
if [[ -n $jobs ]]; then
  build_jobs=(-j "$jobs")
  test_jobs=(-j "$jobs")
fi
stop_on_failure=()
ctest_help=$(ctest --help 2>/dev/null || true)
if [[ $ctest_help == *--stop-on-failure* ]]; then
  stop_on_failure=(--stop-on-failure)
fi
# The suite's own counts of random operations, whatever the environment asks.
unset IOPT_SOAK_OPERATIONS

# Runs ctest with `args`; appends its output to `log`. Sets `failed_tests`
# to the names of the tests that failed (", timeout" noted), empty if none.
failed_tests=""
run_ctest() {
  local log=$1
  shift
  local out=$logs/ctest.out failed_list=$build/Testing/Temporary/LastTestsFailed.log status=0
  rm -f "$failed_list"
  ctest --test-dir "$build" --timeout "$timeout" --output-on-failure --no-tests=error "$@" \
    >"$out" 2>&1 || status=$?
  cat "$out" >>"$log"
  failed_tests=""
  if ((status != 0)); then
    if [[ -f $failed_list ]]; then
      failed_tests=$(sed -e 's/^[0-9]*://' "$failed_list" | paste -sd, - | sed -e 's/,/, /g')
    fi
    [[ -n $failed_tests ]] || failed_tests="ctest (status $status)"
    if grep -q '\*\*\*Timeout' "$out"; then
      failed_tests="$failed_tests (timeout)"
    fi
  fi
  return "$status"
}

started=$SECONDS
echo "scratch: $scratch"
echo "copying the sources: $(sync_sources) files changed"
echo "configuring (log: $logs/configure.log)"
if ! cmake -S "$scratch" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG=-O1 -DIOPT_BUILD_TESTS=ON -DIOPT_BUILD_BENCHMARKS=OFF \
  -DIOPT_BUILD_FUZZERS=OFF -DIOPT_BUILD_DOCS=OFF >"$logs/configure.log" 2>&1; then
  echo "run.sh: configuring the scratch copy failed; see $logs/configure.log" >&2
  echo "(a build directory left by another generator or compiler: remove $build)" >&2
  exit 2
fi
echo "building the unmutated sources (log: $logs/baseline.log)"
if ! cmake --build "$build" "${build_jobs[@]}" >"$logs/baseline.log" 2>&1; then
  echo "run.sh: the unmutated sources do not build; see $logs/baseline.log" >&2
  exit 2
fi
echo "running the unmutated suite"
if ! run_ctest "$logs/baseline.log" "${test_jobs[@]}"; then
  echo "run.sh: the unmutated suite fails ($failed_tests); fix that first: see $logs/baseline.log" >&2
  exit 2
fi
known_tests=" $(ctest --test-dir "$build" -N 2>/dev/null | sed -n 's/^ *Test *#[0-9]*: *//p' | tr '\n' ' ') "
echo "baseline: every test passes ($((SECONDS - started)) s)"
echo

# ---- the mutants -------------------------------------------------------------

declare -a results=() killers=() seconds=()
killed=0
total=${#selected[@]}
done_count=0
for i in "${selected[@]}"; do
  id=${ids[$i]} file=${files[$i]} hint=${hints[$i]}
  done_count=$((done_count + 1))
  printf '[%d/%d] %s %s: ' "$done_count" "$total" "$id" "${file#include/iopt/}"
  start=$SECONDS
  log=$logs/$id.log
  : >"$log"
  result="" killer=""
  count=$(catalog_tool count "$catalog" "$id" "$scratch")
  if [[ $count != 1 ]]; then
    result="stale"
    killer="catalog: original found $count times"
  elif [[ $known_tests != *" $hint "* ]]; then
    result="stale"
    killer="catalog: no test '$hint'"
  else
    cp "$scratch/$file" "$backup"
    mutated_file=$scratch/$file
    catalog_tool apply "$catalog" "$id" "$scratch"
    echo "== build $hint" >>"$log"
    if ! cmake --build "$build" "${build_jobs[@]}" --target "$hint" >>"$log" 2>&1; then
      result="does not compile"
    elif ! run_ctest "$log" -R "^${hint}\$"; then
      result="killed"
      killer=$failed_tests
    else
      echo "== build all" >>"$log"
      if ! cmake --build "$build" "${build_jobs[@]}" >>"$log" 2>&1; then
        result="does not compile"
      elif ! run_ctest "$log" "${test_jobs[@]}" "${stop_on_failure[@]}"; then
        result="killed"
        killer=$failed_tests
      else
        result="survived"
      fi
    fi
    restore
  fi
  [[ $result == killed ]] && killed=$((killed + 1))
  results[i]=$result
  killers[i]=$killer
  seconds[i]=$((SECONDS - start))
  if [[ -n $killer ]]; then
    echo "$result: $killer (${seconds[$i]} s)"
  else
    echo "$result (${seconds[$i]} s; log: $log)"
  fi
done

# ---- the report --------------------------------------------------------------

rate=$(awk -v k="$killed" -v n="$total" 'BEGIN { printf "%.1f", n ? 100 * k / n : 0 }')
elapsed=$((SECONDS - started))
summary="killed $killed of $total ($rate%)"
echo
printf '%-4s  %-26s  %-50s  %-16s  %-22s  %7s\n' id file description result killer seconds
for i in "${selected[@]}"; do
  desc=${descs[$i]}
  ((${#desc} > 50)) && desc="${desc:0:47}..."
  printf '%-4s  %-26s  %-50s  %-16s  %-22s  %7s\n' "${ids[$i]}" "${files[$i]#include/iopt/}" \
    "$desc" "${results[$i]}" "${killers[$i]:--}" "${seconds[$i]}"
done
echo
echo "$summary; $((elapsed / 60)) min $((elapsed % 60)) s in all"
not_killed=()
for i in "${selected[@]}"; do
  if [[ ${results[$i]} != killed ]]; then
    not_killed+=("${ids[$i]} (${results[$i]}): ${logs#"$scratch/"}/${ids[$i]}.log")
  fi
done
if ((${#not_killed[@]} > 0)); then
  echo "not killed (logs under $scratch):"
  printf '  %s\n' "${not_killed[@]}"
fi

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  commit="$commit, with uncommitted changes"
fi
mkdir -p "$(dirname "$report_md")"
{
  echo "# Mutation self-check: last run"
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), sources at $commit"
  compiler=$(g++ --version 2>/dev/null || true)
  echo "- ${compiler%%$'\n'*}, Debug with \`-O1\`, per-test timeout $timeout s"
  if [[ -n $only ]]; then
    echo "- mutants: $only ($total of ${#ids[@]} in the catalog)"
  else
    echo "- mutants: all $total of the catalog"
  fi
  echo
  echo "| id | file | description | result | killer | seconds |"
  echo "|---|---|---|---|---|---:|"
  for i in "${selected[@]}"; do
    desc=${descs[$i]//|/\\|}
    echo "| ${ids[$i]} | \`${files[$i]#include/iopt/}\` | $desc | ${results[$i]} | ${killers[$i]:--} | ${seconds[$i]} |"
  done
  echo
  echo "**$summary**; $((elapsed / 60)) min $((elapsed % 60)) s in all."
  if ((${#not_killed[@]} > 0)); then
    echo
    echo "Not killed (logs in the scratch directory):"
    echo
    printf -- '- %s\n' "${not_killed[@]}"
  fi
} >"$report_md"
echo "report: $report_md"
echo "logs:   $logs"

((killed == total))
