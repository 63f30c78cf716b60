from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from pipetrail.capture.output import CapturedOutput, capture_output

if TYPE_CHECKING:
    from collections.abc import Iterator

_TS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger at its default level, restored afterwards."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield logger
    logger.setLevel(level)


@pytest.fixture
def list_handler(root: logging.Logger) -> Iterator[ListHandler]:
    handler = ListHandler()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def lines(text: str) -> list[str]:
    return [re.sub(_TS, "TS", line) for line in text.splitlines()]


def test_print_is_captured_and_passed_through(capsys: pytest.CaptureFixture[str]) -> None:
    with capture_output() as out:
        print("hello", "world")
        print("second", file=sys.stdout, flush=True)

    assert out.text() == "[stdout] hello world\n[stdout] second\n"
    assert capsys.readouterr().out == "hello world\nsecond\n"


def test_without_tee_nothing_reaches_the_console(capsys: pytest.CaptureFixture[str]) -> None:
    with capture_output(tee=False) as out:
        print("quiet")
        sys.stderr.write("also quiet\n")
        assert not sys.stdout.isatty()

    assert out.text() == "[stdout] quiet\n[stderr] also quiet\n"
    assert capsys.readouterr() == ("", "")


def test_stderr_writes_are_captured(capsys: pytest.CaptureFixture[str]) -> None:
    with capture_output() as out:
        sys.stderr.write("oops\n")
        sys.stderr.writelines(["a\n", "b\n"])

    assert out.text() == "[stderr] oops\n[stderr] a\n[stderr] b\n"
    assert capsys.readouterr().err == "oops\na\nb\n"


def test_logging_records_are_captured_with_the_format(root: logging.Logger) -> None:
    with capture_output() as out:
        logging.getLogger("x").warning("careful %s", "now")

    assert lines(out.text()) == ["[log] TS WARNING x: careful now"]


def test_records_below_the_root_level_are_captured_too(root: logging.Logger) -> None:
    with capture_output() as out:
        assert root.level == logging.NOTSET
        logging.getLogger("train").info("epoch 1")
        logging.getLogger("train.data").debug("batch 1")

    assert root.level == logging.WARNING
    assert lines(out.text()) == [
        "[log] TS INFO train: epoch 1",
        "[log] TS DEBUG train.data: batch 1",
    ]


def test_multiline_records_and_tracebacks_are_prefixed(root: logging.Logger) -> None:
    with capture_output() as out:
        try:
            raise KeyError("k")
        except KeyError:
            logging.getLogger("x").exception("failed\nbadly")

    text = out.text()
    assert all(line.startswith("[log] ") for line in text.splitlines())
    assert "[log] badly\n" in text
    assert "[log] KeyError: 'k'\n" in text


def test_streams_and_logs_are_interleaved_in_order(root: logging.Logger) -> None:
    with capture_output(tee=False) as out:
        print("one")
        logging.getLogger("x").warning("two")
        sys.stderr.write("three\n")
        print("four")

    assert lines(out.text()) == [
        "[stdout] one",
        "[log] TS WARNING x: two",
        "[stderr] three",
        "[stdout] four",
    ]


def test_lines_are_ordered_by_completion_and_unfinished_lines_are_kept() -> None:
    with capture_output(tee=False) as out:
        print("a", end="")
        sys.stderr.write("err\n")
        print("b")
        print("tail", end="")
        assert out.text().endswith("[stdout] tail\n")  # a snapshot shows it already

    assert out.text() == "[stderr] err\n[stdout] ab\n[stdout] tail\n"


def test_progress_bars_keep_their_last_state() -> None:
    with capture_output(tee=False) as out:
        for percent in range(0, 101, 10):
            sys.stderr.write(f"\r{percent:3d}%")
        sys.stderr.write("\n")
        sys.stdout.write("windows line\r\n")
        sys.stdout.write("pending\r")

    assert out.text() == "[stderr] 100%\n[stdout] windows line\n[stdout] pending\n"


def test_nothing_written_is_empty() -> None:
    with capture_output() as out:
        assert out.is_empty
    assert out.is_empty
    assert out.text() == ""

    with capture_output(tee=False) as out:
        print(end="")
        print()
    assert not out.is_empty
    assert out.text() == "[stdout] \n"


def test_everything_is_restored_when_the_block_raises(
    root: logging.Logger, list_handler: ListHandler
) -> None:
    before = (sys.stdout, sys.stderr, root.level, list(root.handlers))

    captured: list[CapturedOutput] = []

    def failing_step() -> None:
        with capture_output() as out:
            captured.append(out)
            print("before the error")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_step()

    assert (sys.stdout, sys.stderr, root.level, list(root.handlers)) == before
    assert list_handler.filters == []
    assert captured[0].text() == "[stdout] before the error\n"


def test_other_handlers_see_only_what_they_saw_before(
    root: logging.Logger, list_handler: ListHandler
) -> None:
    verbose = logging.getLogger("verbose")
    verbose.setLevel(logging.DEBUG)
    try:
        with capture_output() as out:
            logging.getLogger("app").info("hidden from other handlers")
            logging.getLogger("app").warning("shown everywhere")
            verbose.debug("explicitly enabled")
    finally:
        verbose.setLevel(logging.NOTSET)

    assert list_handler.messages == ["shown everywhere", "explicitly enabled"]
    assert len(out.text().splitlines()) == 3
    assert list_handler.filters == []


def test_last_resort_output_is_kept_with_tee(
    root: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = root.handlers[:]
    root.handlers.clear()  # the default: logging prints warnings through lastResort
    try:
        with capture_output() as teed:
            logging.getLogger("lr").warning("to the console")
            logging.getLogger("lr").info("only in the log")
        with capture_output(tee=False) as quiet:
            logging.getLogger("lr").warning("not to the console")
    finally:
        root.handlers[:] = saved

    assert capsys.readouterr().err == "to the console\n"
    assert len(teed.text().splitlines()) == 2
    assert "not to the console" in quiet.text()


def test_the_block_may_set_the_root_level_itself(root: logging.Logger) -> None:
    with capture_output():
        root.setLevel(logging.INFO)
    assert root.level == logging.INFO


def test_nested_captures(root: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("nest")
    with capture_output(tee=False) as outer:
        print("outer 1")
        with capture_output() as inner:
            print("inner teed")
            log.warning("inner log")
        with capture_output(tee=False) as quiet:
            print("inner quiet")
            log.warning("quiet log")
        print("outer 2")
        log.warning("outer log")

    assert lines(inner.text()) == ["[stdout] inner teed", "[log] TS WARNING nest: inner log"]
    assert lines(quiet.text()) == ["[stdout] inner quiet", "[log] TS WARNING nest: quiet log"]
    assert lines(outer.text()) == [
        "[stdout] outer 1",
        "[stdout] inner teed",
        "[log] TS WARNING nest: inner log",
        "[stdout] outer 2",
        "[log] TS WARNING nest: outer log",
    ]
    assert capsys.readouterr() == ("", "")
    assert root.level == logging.WARNING


def test_another_thread_printing_during_the_block_is_not_captured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    go, done = threading.Event(), threading.Event()

    def other() -> None:
        go.wait(10)
        for i in range(50):
            print(f"other {i}")
        sys.stderr.write("other err\n")
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with capture_output(tee=False) as out:
        print("step 1")
        go.set()
        assert done.wait(10)
        print("step 2")
    thread.join()

    assert out.text() == "[stdout] step 1\n[stdout] step 2\n"
    printed = capsys.readouterr()
    assert printed.out == "".join(f"other {i}\n" for i in range(50))
    assert printed.err == "other err\n"


def test_threads_the_block_starts_write_to_the_real_streams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def work(n: int) -> None:
        for i in range(20):
            print(f"thread {n} line {i}")

    with capture_output(tee=False) as out:
        print("mine")
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert out.text() == "[stdout] mine\n"
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 80
    assert all(re.fullmatch(r"thread \d line \d+", line) for line in printed)


def test_another_thread_logging_during_the_block_is_not_captured(
    root: logging.Logger, list_handler: ListHandler
) -> None:
    def other() -> None:
        logging.getLogger("other").warning("from another thread")
        logging.getLogger("other").info("below the level")

    with capture_output(tee=False) as out:
        logging.getLogger("step").warning("from the step")
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()

    assert lines(out.text()) == ["[log] TS WARNING step: from the step"]
    assert list_handler.messages == ["from the step", "from another thread"]


def test_another_thread_still_reaches_the_last_resort_handler(
    root: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        with capture_output(tee=False) as out:
            thread = threading.Thread(
                target=lambda: logging.getLogger("lr").warning("printed as usual")
            )
            thread.start()
            thread.join()
    finally:
        root.handlers[:] = saved

    assert out.is_empty
    assert capsys.readouterr().err == "printed as usual\n"


def test_captures_in_two_threads_each_get_their_own_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = sys.stdout
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    results: dict[str, str] = {}

    def lines_of(name: str) -> None:
        for i in range(30):
            print(f"{name} {i}")
            time.sleep(0.001)  # lets the other thread print in between

    def first() -> None:
        with capture_output(tee=False) as out:
            first_in.set()
            second_in.wait(10)
            lines_of("first")
        results["first"] = out.text()
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with capture_output(tee=False) as out:
            second_in.set()
            lines_of("second")
            first_out.wait(10)  # the capture that started first ends first
            print("second after")
        results["second"] = out.text()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results["first"] == "".join(f"[stdout] first {i}\n" for i in range(30))
    assert results["second"] == "".join(
        [*(f"[stdout] second {i}\n" for i in range(30)), "[stdout] second after\n"]
    )
    assert sys.stdout is original
    assert capsys.readouterr() == ("", "")


def test_a_handler_kept_from_an_earlier_capture_is_captured_again(
    root: logging.Logger,
) -> None:
    logger = logging.getLogger("kept")
    logger.propagate = False
    try:
        with capture_output(tee=False):
            handler = logging.StreamHandler()  # holds the stream of the capture
        logger.addHandler(handler)
        with capture_output(tee=False) as later:
            logger.warning("through the kept handler")
        assert later.text() == "[stderr] through the kept handler\n"
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_a_stream_kept_after_the_block_writes_to_the_original(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with capture_output(tee=False) as out:
        kept = sys.stderr
    kept.write("after\n")
    kept.flush()

    assert capsys.readouterr().err == "after\n"
    assert out.is_empty


def test_stream_attributes_come_from_the_original() -> None:
    original = sys.stdout
    with capture_output():
        assert sys.stdout.encoding == original.encoding
        assert sys.stdout.writable()
        assert not sys.stdout.readable()
        with pytest.raises(TypeError, match="must be str"):
            sys.stdout.write(b"bytes")  # type: ignore[arg-type]


def test_a_capture_is_single_use() -> None:
    capture = capture_output()
    with capture:
        pass
    with pytest.raises(RuntimeError, match="single use"), capture:
        pass
