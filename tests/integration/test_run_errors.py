"""`sweeper run` with bad input: one line on stderr, exit code 2, no traceback, nothing in MLflow."""
import socket
import threading
import time

import pytest

from sweeper import cli


def run(capsys, *args):
    code = cli.main(["run", *args])
    out = capsys.readouterr()
    return code, out.err


def assert_one_line(code, err, message):
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["no-such-experiment.yaml"], "not found (bundled: "),
    (["--trials", "0"], "--trials must be a positive integer"),
    (["--profile", "huge"], "unknown profile 'huge'"),
])
def test_bad_arguments(capsys, tmp_path, args, message):
    code, err = run(capsys, *args, "--workdir", str(tmp_path / "wd"))
    assert_one_line(code, err, message)
    assert not (tmp_path / "wd").exists()


def test_unwritable_work_directory(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = run(capsys, "--workdir", str(blocker / "wd"), "--profile", "tiny")
    assert_one_line(code, err, "is not writable")


def test_tracking_server_that_does_not_answer(capsys, tmp_path):
    """A socket that accepts connections and never replies: fail within seconds, create nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        start = time.perf_counter()
        code, err = run(capsys, "--workdir", str(tmp_path / "wd"), "--profile", "tiny",
                        "--tracking-uri", f"http://127.0.0.1:{port}")
        assert time.perf_counter() - start < 30
    finally:
        stop.set()
        server.close()
    assert_one_line(code, err, f"MLflow server at http://127.0.0.1:{port} did not answer")
    assert not (tmp_path / "wd").exists()


def test_ray_address_that_refuses(capsys, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    code, err = run(capsys, "--workdir", str(tmp_path / "wd"), "--profile", "tiny", "--address", f"127.0.0.1:{port}")
    assert_one_line(code, err, f"no Ray cluster answers at 127.0.0.1:{port}")
    assert not (tmp_path / "wd").exists()
