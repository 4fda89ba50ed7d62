import logging
import multiprocessing
import sys


def test_reads_stdin():
    print("STDIN:", repr(sys.stdin.read()))


def test_surrogates_and_stdout():
    # Under C.UTF-8 and the C locale Python's stdout uses surrogateescape, so
    # undecodable bytes round-trip; elsewhere this raises (cold and warm alike).
    raw = "\udcff".encode(sys.stdout.encoding, sys.stdout.errors)
    print("encoded:", repr(raw))


def test_logs_without_handlers():
    logging.getLogger("equiv").warning("warned through logging's last resort")


def test_stream_facts():
    for name in ("stdin", "stdout", "stderr"):
        stream = getattr(sys, name)
        facts = [stream.encoding, stream.errors, stream.line_buffering, stream.isatty()]
        if not hasattr(stream, "buffer"):  # pytest's capture stream stands in (no -s)
            print(name, "captured", facts)
            continue
        facts += [stream.name, stream.mode, stream.write_through, type(stream.buffer).__name__]
        print(name, facts)


def _square(x):
    return x * x


def test_multiprocessing_spawn():
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_square, [3]) == [9]


def test_multiprocessing_fork():
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_square, [4]) == [16]


def test_argv0():
    print("argv0:", sys.argv[0])
