#!/usr/bin/env bash
# Builds and runs the fuzz targets (cargo fuzz, libFuzzer). cargo-fuzz is installed on first use
# under the target directory (${CARGO_TARGET_DIR:-target}/tools/cargo-fuzz), the build goes to
# ${CARGO_TARGET_DIR:-target}/fuzz.
#
#   fuzz/run.sh build                  build every target
#   fuzz/run.sh smoke [SECONDS]        build, then run each target SECONDS (default 5) from its
#                                      committed corpus (new inputs go to a scratch directory)
#   fuzz/run.sh run TARGET [ARGS...]   fuzz one target, growing fuzz/corpus/TARGET; ARGS go to
#                                      libFuzzer (e.g. -runs=10000000)
#   fuzz/run.sh cmin TARGET            minimize fuzz/corpus/TARGET in place (cmin, then a set
#                                      cover over edges)
#   fuzz/run.sh list                   the targets
#
# Targets are built without a sanitizer (--sanitizer none), which works on the stable toolchain;
# FUZZ_TOOLCHAIN=nightly FUZZ_SANITIZER=address adds AddressSanitizer. Every run applies the
# limits a crash is judged by: -timeout=5 -rss_limit_mb=512 -malloc_limit_mb=256.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
tools="$target_dir/tools/cargo-fuzz"
cargo_fuzz_version="0.13.2"
toolchain="${FUZZ_TOOLCHAIN:-}"
sanitizer="${FUZZ_SANITIZER:-none}"
limits=(-timeout=5 -rss_limit_mb=512 -malloc_limit_mb=256)

die() {
    echo "fuzz/run.sh: $*" >&2
    exit 1
}

command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
if [[ -n "$toolchain" ]]; then
    command -v rustup >/dev/null || die "FUZZ_TOOLCHAIN=$toolchain needs rustup"
    rustup run "$toolchain" rustc --version >/dev/null 2>&1 || die "the $toolchain toolchain is not installed: rustup toolchain install $toolchain"
fi
if [[ "$sanitizer" != none && "${toolchain:-}" != nightly* ]]; then
    die "FUZZ_SANITIZER=$sanitizer needs a nightly toolchain: set FUZZ_TOOLCHAIN=nightly"
fi
# libfuzzer-sys compiles libFuzzer itself (C++).
command -v "${CXX:-c++}" >/dev/null || die "libFuzzer needs a C++ compiler (${CXX:-c++}); install g++ or clang"

if [[ ! -x "$tools/bin/cargo-fuzz" ]] || [[ "$("$tools/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]]; then
    echo "==> installing cargo-fuzz $cargo_fuzz_version into $tools"
    # Its own temporary build directory: the install's artifacts do not mix with the project's.
    env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --root "$tools"
fi

# Optimized builds for real runs; the smoke run (tests/run.sh) builds unoptimized (FUZZ_MODE=--dev):
# its instrumented dependencies compile in about half the time, and seconds per target need no speed.
mode="${FUZZ_MODE:--O}"
fuzz() {
    local sub="$1"
    shift
    PATH="$tools/bin:$PATH" cargo ${toolchain:++$toolchain} fuzz "$sub" "$mode" -a --sanitizer "$sanitizer" --target-dir "$target_dir/fuzz" "$@"
}

targets() {
    PATH="$tools/bin:$PATH" cargo fuzz list
}

case "${1:-}" in
    build)
        fuzz build
        ;;
    smoke)
        seconds="${2:-5}"
        mode="${FUZZ_MODE:---dev}"
        fuzz build
        scratch="$(mktemp -d)"
        trap 'rm -rf "$scratch"' EXIT
        for t in $(targets); do
            echo "==> fuzz $t (${seconds}s)"
            mkdir -p "$scratch/$t"
            if ! fuzz run "$t" "$scratch/$t" "corpus/$t" -- "${limits[@]}" -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
                tail -n 40 "$scratch/$t.log" >&2
                die "$t failed; the input is under fuzz/artifacts/$t/"
            fi
            grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|DONE" "$scratch/$t.log" || true
        done
        ;;
    run)
        [[ $# -ge 2 ]] || die "usage: fuzz/run.sh run TARGET [LIBFUZZER ARGS...]"
        t="$2"
        shift 2
        mkdir -p "corpus/$t"
        fuzz run "$t" "corpus/$t" -- "${limits[@]}" -print_final_stats=1 "$@"
        ;;
    cmin)
        [[ $# -eq 2 ]] || die "usage: fuzz/run.sh cmin TARGET"
        t="$2"
        fuzz cmin "$t" "corpus/$t" -- "${limits[@]}"
        # cmin keeps every input with a feature of its own (hit-count buckets included): thousands
        # of files. A greedy set cover over edges alone keeps the committed corpus to hundreds.
        cover="$(mktemp -d)"
        "$target_dir/fuzz/x86_64-unknown-linux-gnu/release/$t" -set_cover_merge=1 -use_counters=0 "${limits[@]}" "$cover" "corpus/$t"
        rm -rf "corpus/$t"
        mv "$cover" "corpus/$t"
        ;;
    list)
        targets
        ;;
    *)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
