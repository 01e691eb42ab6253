"""The command line: options reach the API, and every bad input is one `Error:` line, never a traceback."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from artem_cli import api, bench, quality, weights
from artem_cli.cli import ModeList, main
from artem_cli.errors import ArtemError
from conftest import EXAMPLES, REPO, on_a_terminal, only_locks, spawned_children

CONTENT = str(EXAMPLES / "chelsea.png")
STYLE = str(EXAMPLES / "ihc.png")
FAST = ["--size", "48", "--iterations", "3", "-q"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_stylize_writes_the_output_and_a_json_summary(tmp_path, weights_path):
    out = tmp_path / "out.jpg"
    r = run("stylize", CONTENT, STYLE, "-o", out, *FAST, "--json", "--style-layers", "relu1_1:2,relu3_1",
            "--content-layers", "relu2_2", "--tv-weight", "0.5", "--optimizer", "adam", "--lr", "5", "--seed", "3")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["iterations"] == 3 and summary["settings"]["optimizer"] == "adam"
    assert summary["settings"]["style_layers"] == [["relu1_1", 2.0], ["relu3_1", 1.0]]
    assert summary["final_losses"]["total"] < summary["initial_losses"]["total"]
    assert Image.open(out).format == "JPEG" and Image.open(out).size == (48, 32)
    assert summary["settings"]["binary_from"] is None  # fp32: no binary layer
    for args, first in ((["--mode", "xnor"], "conv4_2"), (["--mode", "bwn", "--binary-weights", "untrained"], "conv1_2"),
                        (["--mode", "bwn", "--binary-from", "conv4_1"], "conv4_1")):  # the network run, not None
        r = run("stylize", CONTENT, STYLE, "-o", out, *FAST, "--json", "--overwrite", *args)
        assert (r.exit_code, json.loads(r.stdout)["settings"]["binary_from"]) == (0, first), r.output


def test_default_output_name_progress_and_print_every(tmp_path, weights_path):
    content = tmp_path / "cat.png"
    content.write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    r = run("stylize", content, STYLE, "--size", "48", "--iterations", "4", "--print-every", "2", "--save-every", "2")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cat_stylized.png").is_file() and (tmp_path / "cat_stylized_00002.png").is_file()
    assert "iteration 2: loss" in r.stderr and "iteration 4: loss" in r.stderr
    assert "\r" not in r.stderr and "4/4" not in r.stderr  # no bar where standard error is no terminal: only lines


def test_the_progress_bar_is_drawn_on_a_terminal(tmp_path, weights_path):
    status, shown, stdout = on_a_terminal("stylize", CONTENT, STYLE, "--size", "32", "--iterations", "4",
                                          "-o", tmp_path / "o.png", "--json")
    assert status == 0, shown
    assert re.search(r"4/4 \[[^]]*loss", shown), shown  # the bar, its last state
    assert json.loads(stdout)["iterations"] == 4  # standard output stays the summary's alone


BAD_INPUT = [
        (["missing.png", STYLE], "content image 'missing.png' does not exist"),
        ([CONTENT, str(REPO / "pyproject.toml")], "is not an image file"),
        ([CONTENT, str(EXAMPLES)], "is a folder"),
        ([CONTENT, STYLE, "--size", "0"], "size must be between"),
        ([CONTENT, STYLE, "--size", "1000000"], "size must be between"),
        ([CONTENT, STYLE, "--iterations", "-5"], "iterations must be at least 1"),
        ([CONTENT, STYLE, "--style-weight", "-1"], "style-weight must be"),
        ([CONTENT, STYLE, "--style-layers", "relu1_1,relu9_1"], "unknown layer name 'relu9_1'"),
        ([CONTENT, STYLE, "--style-blend", "0.5,0.5"], "style-blend has 2 weights for 1 style images"),
        ([CONTENT, STYLE, "--init", "nowhere.png"], "init image 'nowhere.png' does not exist"),
        ([CONTENT, STYLE, "--init", "nowhere.png", "-o", "nowhere.png"], "init image 'nowhere.png' does not exist"),
        ([CONTENT, STYLE, "-o", "/nonexistent-dir/out.png"], "output folder '/nonexistent-dir' does not exist"),
        ([CONTENT, STYLE, "-o", f"{CONTENT}/out.png"], f"output folder '{CONTENT}' is a file"),
        ([CONTENT, STYLE, "-o", "out.gifx"], "cannot tell the output format"),
        (["-", STYLE], "content image '-': artem reads images from files, not from standard input"),
        ([CONTENT, STYLE, "-o", "-"], "output '-': artem writes images to files, not to standard output"),
        ([CONTENT, STYLE, "--weights", "nope.npz"], "weights file 'nope.npz' does not exist"),
        ([CONTENT, STYLE, "--lr", "-1", "--optimizer", "adam"], "learning rate must be"),
        ([CONTENT, STYLE, "--style-layers", "pool5", "--size", "40"], "too small for pool5, which needs at least 32 px"),
        ([CONTENT, STYLE, "--content-weight", "0", "--style-weight", "0", "--tv-weight", "0"], "every loss term weighs 0"),
        ([CONTENT, STYLE, "--content-weight", "0", "--tv-weight", "0", "--style-layers", "relu1_1:0"], "every loss term"),
        ([CONTENT, STYLE, "--history", "0"], "history (L-BFGS's correction pairs) must be at least 1, not 0"),
        ([CONTENT, STYLE, "--lr", "5"], "lr goes with optimizer adam, not lbfgs"),  # it would be ignored
        ([CONTENT, STYLE, "--optimizer", "adam", "--history", "5"], "history goes with optimizer lbfgs, not adam"),
        ([CONTENT, STYLE, "--lr", "10"], "lr goes with optimizer adam, not lbfgs"),  # its default: ignored as well
        ([CONTENT, STYLE, "--optimizer", "adam", "--history", "100"], "history goes with optimizer lbfgs, not adam"),
        ([CONTENT, STYLE, "--tv-weight", "1e308"], "became NaN or infinite"),  # and no overflow warnings
        ([CONTENT, STYLE, "--init", "previous"], "--init previous is for frames: artem batch"),
        ([CONTENT, STYLE, "--style-blend", "nan"], "style-blend weights must be finite numbers"),
        ([CONTENT, STYLE, "--mode", "xnor", "--binary-weights", str(REPO / "weights" / "vgg16.npz")],
         "holds the float VGG16, not a binary network"),
        ([CONTENT, STYLE, "--weights", str(REPO / "weights" / "bwn.npz")], "holds a trained bwn network, not the float VGG16"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT)
def test_bad_input_is_one_error_line(args, message, tmp_path, monkeypatch, weights_path):
    monkeypatch.chdir(tmp_path)
    if "-o" not in args:
        args = [*args, "-o", "out.png"]
    r = run("stylize", *FAST, *args)
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [f"Error: {r.stderr.strip()[7:]}"]
    assert message in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not list(tmp_path.iterdir())  # no output, not even a partial one


@pytest.mark.parametrize("args,message", [(args, message) for args, message in BAD_INPUT if "--tv-weight" not in args])
def test_a_dry_run_refuses_bad_input_as_the_run_does(args, message, tmp_path, monkeypatch, weights_path):
    """The same one line for what the run refuses before any work (its output too), but what only an
    evaluation finds (weights so large the loss overflows)."""
    monkeypatch.chdir(tmp_path)
    r = run("stylize", *FAST, *args, "--dry-run")
    assert r.exit_code == 1 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.output
    assert not list(tmp_path.iterdir())


def test_a_dry_run_refuses_what_the_run_refuses_of_its_output_and_memory(tmp_path, monkeypatch, weights_path):
    """An output that exists (without --overwrite), would replace an input, or has no format; a run
    needing more memory than is free: refused by the dry run as by the run, before any work."""
    (tmp_path / "there.png").write_bytes(b"an earlier result")
    for args, message in (([CONTENT, STYLE, "-o", tmp_path / "there.png"], "already exists; pass --overwrite"),
                          ([CONTENT, STYLE, "-o", CONTENT, "--overwrite"], "would replace an input image"),
                          ([CONTENT, STYLE, "-o", tmp_path / "x.what"], "cannot tell the output format")):
        r = run("stylize", *FAST, *args, "--dry-run")
        assert (r.exit_code, len(r.stderr.splitlines())) == (1, 1) and message in r.stderr, r.output
    monkeypatch.setattr(api, "host_memory", lambda shared=False: ("free", 2**20))
    for command in (["stylize", CONTENT], ["batch", EXAMPLES, "-o", tmp_path / "out", "--include", "chelsea.png", "--style"]):
        r = run(*command, STYLE, *FAST, "--dry-run")
        assert r.exit_code == 1 and "48x32 run needs about 0.3 GiB more memory but 0.0 GiB are free" in r.stderr, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.png"]


def test_a_photo_with_damaged_metadata_is_painted_or_refused_without_pillows_warnings(tmp_path, weights_path):
    """Pillow warns (two lines, with a path in its code) and reads the image without its EXIF data; a
    TIFF cut short warns of each tag whose data lay past its end, then fails: one error line."""
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (100, 150, 200)).save(photo, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00" + b"\xff" * 30)
    r = subprocess.run([sys.executable, "-m", "artem_cli", "stylize", photo, STYLE, *FAST, "-o", tmp_path / "o.png"],
                       cwd=REPO, capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "") and Image.open(tmp_path / "o.png").size == (48, 36)
    whole = BytesIO()
    Image.new("RGB", (64, 48), (100, 150, 200)).save(whole, format="TIFF", description="x" * 3000)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.getvalue()[:400])  # its header and tags: the description's text and the pixels past the end
    r = subprocess.run([sys.executable, "-m", "artem_cli", "stylize", cut, STYLE, *FAST, "-o", tmp_path / "c.png"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith(f"Error: content image '{cut}' is damaged or truncated"), r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_a_dry_run_with_absurd_weights_says_its_prediction_without_warnings(weights_path):
    """Its probes overflow, as the run would (which then stops with one clear error); a process of
    its own, where NumPy's warnings reach stderr (pytest catches them in this one)."""
    r = subprocess.run([sys.executable, "-m", "artem_cli", "stylize", CONTENT, STYLE, *FAST, "--tv-weight", "1e308",
                        "--dry-run"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "" and "s per iteration on average" in r.stdout, r.stderr


@pytest.mark.parametrize(
    "args", [["--optimizer", "sgd"], ["--pooling", "min"], ["--style-layers", "relu1_1:heavy"], ["--style-blend", "a,b"],
             ["--seed", "-1"], ["--binary-weights", "untrained"], ["--mode", "random", "--binary-from", "conv3_1"],
             ["--calibrate"], ["--style-layers", "relu1_1:"], ["--mode", "xnor", "--binary-from", "relu3_1"]]
)
def test_usage_errors_exit_2(args):
    r = run("stylize", CONTENT, STYLE, *args)
    assert r.exit_code == 2 and "Error" in r.output


def test_existing_output_is_kept_without_overwrite(tmp_path, weights_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"earlier result")
    r = run("stylize", CONTENT, STYLE, "-o", out, *FAST)
    assert r.exit_code == 1 and "--overwrite" in r.stderr
    assert out.read_bytes() == b"earlier result"
    assert run("stylize", CONTENT, STYLE, "-o", out, *FAST, "--overwrite").exit_code == 0
    assert Image.open(out).size == (48, 32)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_overflow_is_one_error_line_and_no_warning_from_any_thread(tmp_path, weights_path):
    """Absurd weights overflow in the element-wise work that runs in worker threads too (ReLU's
    mask): no warning may be printed there either (here a warning would be an exception)."""
    r = run("stylize", CONTENT, STYLE, "-o", tmp_path / "o.png", "--size", "24", "--iterations", "3", "-q",
            "--style-weight", "1e308", "--optimizer", "adam")
    assert r.exit_code == 1 and r.stderr == ("Error: the loss or its gradient became NaN or infinite; try smaller "
                                             "weights or learning rate\n"), r.output


def test_a_failed_side_of_the_end_to_end_comparison_fails_the_command(monkeypatch):
    def report(*args, **kwargs):
        run_ = {"seconds": 1.0, "iterations": 5, "evaluations": 5, "seconds_per_iteration": 0.2,
                "peak_memory_bytes": 2**30, "losses": {"total": 4.0, "style": 1.0, "content": 2.0, "tv": 1.0}}
        machine = {"cpu": "x", "cores": 2, "blas": "b", "artem": "0.1", "numpy": "2", "numba": "0.68", "python": "3.11"}
        return {"machine": machine, "protocol": {"content": "c", "style": "s", "size": 64, "iterations": 5, "history": 100,
                                                 "device": "cpu"},
                "artem": run_, "artem_graph": None, "torch": {"error": "RuntimeError: no"}}

    monkeypatch.setattr(bench, "end_to_end", report)
    r = run("benchmark", "--end-to-end", "--quick")
    assert r.exit_code == 1 and "PyTorch: failed (RuntimeError: no)" in r.stdout
    assert r.stderr == "Error: the torch side of the comparison failed\n"


def test_ctrl_c_at_the_terminal_stops_the_end_to_end_benchmark_in_one_line(weights_path):
    """A terminal's Ctrl-C is a SIGINT to the whole process group, the process that runs artem's side
    of the comparison with the benchmark: it leaves it to the benchmark, which ends it and says so in
    one line (exit 130); the side prints no traceback. Once the side paints (it has run a second of
    CPU time: past its start, Python's handler in place were it to take SIGINT), it gets SIGINT
    first, until it has painted a second more (one that takes it prints its traceback and ends
    within milliseconds), then the whole group."""
    command = [sys.executable, "-m", "artem_cli", "benchmark", "--end-to-end", "--size", "48", "--iterations",
               "1000000", "--optimizer", "adam", "--no-torch"]
    benchmark = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300  # a benchmark stuck fails the test, not the suite
    try:
        while len(side := spawned_children(benchmark.pid)) != 1 or min(side.values()) < 1.0:
            assert benchmark.poll() is None, benchmark.stderr.read()
            assert time.monotonic() < deadline, "the side did not paint"
            time.sleep(0.2)
        (pid, seconds), = side.items()
        os.kill(pid, signal.SIGINT)
        while pid in (now := spawned_children(benchmark.pid)) and now[pid] < seconds + 1.0:
            assert time.monotonic() < deadline, "the side stopped painting after its SIGINT"
            time.sleep(0.1)
        assert pid in now, "the side ended at its SIGINT"
        os.killpg(benchmark.pid, signal.SIGINT)
        stdout, stderr = benchmark.communicate(timeout=120)
    finally:
        if benchmark.poll() is None:
            os.killpg(benchmark.pid, signal.SIGKILL)
    assert (benchmark.returncode, stdout, stderr) == (130, "", "Interrupted (SIGINT); nothing was reported\n")
    assert not Path(f"/proc/{pid}").exists() or " Z " in Path(f"/proc/{pid}/stat").read_text()


def test_an_output_never_replaces_an_input(tmp_path, weights_path):
    """Not the result, nor a snapshot, even with --overwrite: not the content, a style or the init image."""
    content, init, style = tmp_path / "cat.png", tmp_path / "start.png", tmp_path / "out_00002.png"
    for image in (content, init, style):
        image.write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    (tmp_path / "link_00002.png").symlink_to(content)  # a snapshot's name, and the content's file
    for output, options in [(content, []), (init, ["--init", init]), (tmp_path / "out.png", ["--save-every", "2"]),
                            (tmp_path / "link.png", ["--save-every", "2"])]:
        r = run("stylize", content, style, "-o", output, *FAST, "--overwrite", *options)
        assert r.exit_code == 1 and "would replace an input image" in r.stderr, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.png", "link_00002.png", "out_00002.png", "start.png"]
    assert all(image.read_bytes() == (EXAMPLES / "chelsea.png").read_bytes() for image in (content, init, style))


def test_a_network_file_whose_path_holds_an_at_sign_is_a_file_not_a_layer(tmp_path, weights_path):
    """``--modes bwn:FILE@LAYER``: a file's path may hold '@' (``runs@2/``); it was cut there, and the
    rest refused as a layer's name."""
    network = tmp_path / "runs@2" / "b.npz"
    network.parent.mkdir()
    shutil.copy(REPO / "weights" / "bwn.npz", network)
    for spec, label in [(f"bwn:{network}", "bwn-b"), (f"bwn:{network}@conv4_1", "bwn-b@conv4_1")]:
        assert api.network_spec(spec)["binary_weights"] == str(network)
        assert quality.label(spec) == label
        r = run("benchmark", "--size", "32", "--repeats", "1", "--no-torch", "--modes", f"fp32,{spec}")
        assert r.exit_code == 0 and f"artem {spec}" in r.stdout, r.output
    assert api.split_spec("bwn:runs/net@final") == ("bwn", "runs/net@final", "")  # no layer's name after its '@'
    r = run("benchmark", "--size", "32", "--repeats", "1", "--no-torch", "--modes", f"bwn:{network}@conv6_1")
    assert r.exit_code == 2 and "the first binary layer must be one of" in r.output


def test_a_leading_tilde_is_the_home_folder(tmp_path, monkeypatch, weights_path):
    """Where the shell leaves ``~`` as it is (``--init=~/x``, or no shell at all), artem expands it, in
    paths, the sources of --init and --binary-weights, and a network's file in --modes."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cat.png").write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    shutil.copy(EXAMPLES / "ihc.png", tmp_path / "stain.png")
    r = run("stylize", "~/cat.png", "~/stain.png", "-o", "~/out.png", "--init=~/cat.png", *FAST)
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out.png").size == (48, 32)
    r = run("stylize", CONTENT, STYLE, "--mode", "xnor", "--binary-weights=~/none.npz", *FAST)
    assert r.exit_code == 1 and f"{tmp_path / 'none.npz'}" in r.stderr, r.output
    assert ModeList().convert("fp32, bwn:~/b.npz@conv3_1,xnor:untrained", None, None) == (
        "fp32", f"bwn:{tmp_path / 'b.npz'}@conv3_1", "xnor:untrained")
    for args in (["", STYLE], [CONTENT, STYLE, "-o", ""], [CONTENT, STYLE, "--init", ""]):
        r = run("stylize", *args, *FAST)
        assert r.exit_code == 2 and "an empty path names no file" in r.stderr, r.output
    # an output file's name ending in a slash names a folder (as a Path, the slash would be dropped)
    for command in (["stylize", CONTENT, STYLE, *FAST, "-o"], ["distill", "-o"], ["distill", "--checkpoint"],
                    ["benchmark", "--json"], ["visualize", "-o"]):
        for tail in ("/", "/.", "/.."):
            r = run(*command, f"{tmp_path / 'x.png'}{tail}")
            assert r.exit_code == 2 and r.stderr.endswith(f"'{tmp_path / 'x.png'}{tail}' ends in '{tail}', as a folder's "
                                                          "name does; give the file's name\n"), r.output
    assert not (tmp_path / "x.png").exists()


def test_an_existing_snapshot_is_kept_without_overwrite(tmp_path, weights_path):
    out, snapshot = tmp_path / "out.png", tmp_path / "out_00002.png"
    snapshot.write_bytes(b"earlier result")
    r = run("stylize", CONTENT, STYLE, "-o", out, *FAST, "--save-every", "2")
    assert r.exit_code == 1 and r.stderr == (f"Error: '{snapshot}' already exists, and --save-every 2 would replace it; "
                                             "pass --overwrite to replace it\n")
    assert snapshot.read_bytes() == b"earlier result" and not out.exists()
    r = run("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "1000000000", "--save-every", "2")
    assert r.exit_code == 1 and "--save-every 2 would replace it" in r.stderr  # found in the folder, not name by name
    assert run("stylize", CONTENT, STYLE, "-o", out, *FAST, "--save-every", "2", "--overwrite").exit_code == 0
    assert Image.open(snapshot).size == (48, 32)


def test_corrupt_weights_are_one_error_line(tmp_path):
    bad = tmp_path / "w.npz"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    r = run("stylize", CONTENT, STYLE, "--weights", bad, "-o", tmp_path / "o.png", *FAST)
    assert r.exit_code == 1 and r.stderr.startswith("Error: weights file") and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("at", [30, 1])
def test_ctrl_c_saves_the_current_image(at, tmp_path, monkeypatch, weights_path):
    """At the 30th evaluation some iterations are done (the first line search from the photo takes
    several evaluations); at the first none is, and there is nothing to save."""
    calls = {"n": 0}
    real = api.Objective.probed

    def interrupted(self, x, probes):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(self, x, probes)

    monkeypatch.setattr(api.Objective, "probed", interrupted)
    out = tmp_path / "o.png"
    r = run("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "100")
    assert r.exit_code == 130
    if at == 30:  # the run's line (iterations, time, loss), then the interruption's
        assert re.fullmatch(rf"{re.escape(str(out))}: \d+ iterations in [\d.]+ s \(interrupted\); loss \S+\n"
                            rf"Interrupted: saved the image reached so far to {re.escape(str(out))} \(SIGINT\)\n", r.stderr)
        assert Image.open(out).size == (48, 32)
    else:
        assert "Interrupted before the first iteration ended (SIGINT); nothing was written" in r.stderr
        assert not out.exists()


def test_a_signal_after_the_last_iteration_saves_the_finished_result_and_says_so(tmp_path, monkeypatch, weights_path):
    """A Ctrl-C while the finished image's losses are computed: the result is whole, and said to be,
    not "the image reached so far"; the exit status is the signal's."""
    import signal

    quantize, calls = api.io.quantize, []

    def signal_once(image):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # recorded by stylize's handler
        return quantize(image)

    monkeypatch.setattr(api.io, "quantize", signal_once)
    out = tmp_path / "o.png"
    r = run("stylize", CONTENT, STYLE, "-o", out, "--size", "48", "--iterations", "2", "-q")
    assert (r.exit_code, r.stderr) == (130, "SIGINT arrived after the last iteration; the finished result is saved\n")
    assert Image.open(out).size == (48, 32)


def test_weights_commands(tmp_path, weights_path):
    r = run("weights", "info")
    assert r.exit_code == 0 and "reference_imagenet_vgg16: True" in r.output and "sha256:" in r.output
    r = run("weights", "fetch")
    assert r.exit_code == 0 and "already present and verified" in r.output
    garbage = tmp_path / "x.onnx"
    garbage.write_text("nonsense")
    r = run("weights", "convert", garbage, "--to", tmp_path / "o.npz")
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and "ONNX" in r.stderr
    r = run("weights", "info", "--weights", garbage)
    assert r.exit_code == 1 and "not a readable artem weights file" in r.stderr
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"a picture")
    trained = tmp_path / "mine.npz"
    shutil.copy(REPO / "weights" / "bwn.npz", trained)
    for to, message in [(precious, f"'{precious}' exists and is not an artem VGG16 weights file; give another --to"),
                        (trained, f"'{trained}' exists and holds a trained bwn network; give another --to"),
                        (garbage, "is the file being converted")]:
        r = run("weights", "convert", garbage, "--to", to)
        assert r.exit_code == 1 and message in r.stderr, r.output
    assert precious.read_bytes() == b"a picture" and garbage.read_text() == "nonsense"
    assert trained.read_bytes() == (REPO / "weights" / "bwn.npz").read_bytes()
    r = run("weights", "fetch", "--to", precious)
    assert r.exit_code == 1 and "pass --force to replace it" in r.stderr and precious.read_bytes() == b"a picture"


def test_benchmark_reports_a_measured_pass(weights_path):
    r = run("benchmark", "--size", "32", "--repeats", "1", "--no-torch", "--layers", "--modes", "fp32,xnor")
    assert r.exit_code == 0, r.output
    assert "artem fp32" in r.output and "artem xnor" in r.output and "/ artem fp32" in r.output
    assert "conv5_3" in r.output and "GMAC/s" in r.output and "ideal XNOR-popcount loop" in r.output
    assert re.search(r"artem fp32 .*  [1-9][\d.]* G MAC/s\n", r.output), r.output  # a small pass's rate, not 0.00 T
    assert "PyTorch: not run (--no-torch)" in r.output
    for args, message in ((["--size", "0"], "size must be between 16 and 8192 pixels, not 0"),
                          (["--size", "100000"], "size must be between 16 and 8192 pixels, not 100000"),
                          (["--aspect", "30"], "aspect must be between 0.05 and 20, not 30")):  # which of the two
        r = run("benchmark", *args)
        assert (r.exit_code, r.stderr) == (1, f"Error: {message}\n")
    r = run("benchmark", "--size", "100", "--aspect", "0.05")  # 5 px high: refused, not quietly made 16
    assert r.exit_code == 1 and r.stderr == "Error: --size 100 at --aspect 0.05 is 100x5 px; the pass needs 16 px on each side\n"
    r = run("benchmark", "--size", "20", "--end-to-end", "--iterations", "1", "--no-torch")  # --aspect is not its
    assert r.exit_code == 1 and r.stderr.startswith("Error: the content image at 20x13 px is too small"), r.output


def test_benchmark_json_file_is_checked_before_the_timing_and_kept_without_overwrite(tmp_path, monkeypatch,
                                                                                       weights_path):
    earlier = tmp_path / "report.json"
    earlier.write_text("an earlier report")

    def not_now(*args):
        raise AssertionError("timed before the --json file was checked")

    with monkeypatch.context() as m:
        m.setattr(bench, "network_pass", not_now)
        for path, message in [(earlier, f"output '{earlier}' already exists; pass --overwrite to replace it"),
                              (tmp_path / "nowhere" / "r.json", f"output folder '{tmp_path / 'nowhere'}' does not exist"),
                              (tmp_path, f"output '{tmp_path}' is a folder")]:
            r = run("benchmark", "--size", "32", "--json", path)
            assert (r.exit_code, r.stderr) == (1, f"Error: {message}\n")
    assert earlier.read_text() == "an earlier report"
    r = run("benchmark", "--size", "32", "--repeats", "1", "--no-torch", "--json", earlier, "--overwrite")
    assert r.exit_code == 0 and "artem fp32" in r.stdout and "fp32" in json.loads(earlier.read_text())["pass"]["seconds"]


def test_a_failed_pytorch_pass_is_reported_beside_artems_figures(monkeypatch, weights_path):
    """A PyTorch without CUDA beside CuPy (--device cuda), or one out of memory: artem's figures are
    still printed, with the failure, and the exit status says so."""
    def no_cuda(*args):
        raise AssertionError("Torch not compiled with CUDA enabled")

    monkeypatch.setattr(bench, "torch_pass", no_cuda)
    r = run("benchmark", "--size", "32", "--repeats", "1", "--modes", "fp32")
    assert r.exit_code == 1 and "artem fp32" in r.stdout, r.output
    assert "PyTorch: failed (AssertionError: Torch not compiled with CUDA enabled)" in r.stdout
    assert r.stderr == "Error: the torch side of the comparison failed\n"


def test_benchmark_never_writes_its_json_over_a_file_it_reads(tmp_path, weights_path):
    """Not the VGG16 weights, a binary network of --modes, the end-to-end run's images, even with
    --overwrite (the weights file became JSON text)."""
    import shutil as sh

    teacher, network = tmp_path / "teach.npz", tmp_path / "net.npz"
    sh.copy(weights_path, teacher)
    sh.copy(REPO / "weights" / "bwn.npz", network)
    for args in (["--weights", teacher, "--json", teacher], ["--weights", teacher, "--modes", f"fp32,bwn:{network}",
                                                             "--json", network],
                 ["--modes", "fp32,bwn", "--json", REPO / "weights" / "bwn.npz"],
                 ["--end-to-end", "--json", EXAMPLES / "ihc.png"]):
        earlier = {path: path.read_bytes() for path in (teacher, network, REPO / "weights" / "bwn.npz", EXAMPLES / "ihc.png")}
        r = run("benchmark", "--size", "32", "--no-torch", *args, "--overwrite")
        assert (r.exit_code, r.stderr) == (1, f"Error: the --json file '{args[-1]}' would replace a file the benchmark "
                                              "reads; give another name\n"), r.output
        assert all(path.read_bytes() == data for path, data in earlier.items())


def test_benchmark_end_to_end_quick_writes_every_field(tmp_path, weights_path):
    """The numbers are reported, not asserted: here only that every field is there and sane."""
    out = tmp_path / "e2e.json"
    r = run("benchmark", "--end-to-end", "--quick", "--iterations", "3", "--no-torch", "--json", out)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert set(report) >= {"machine", "protocol", "artem", "torch"} and report["torch"] is None
    assert all(report[name] is None for name in bench.GPU_VARIANTS)  # a GPU's only
    assert {"cpu", "cores", "blas", "artem", "numpy", "numba", "python"} <= set(report["machine"])
    assert report["protocol"]["size"] == 256 and report["protocol"]["iterations"] == 3
    artem = report["artem"]
    assert artem["iterations"] == 3 and artem["evaluations"] >= 3 and artem["seconds"] > 0
    assert artem["seconds_per_iteration"] > 0 and artem["peak_memory_bytes"] > 1e8
    assert set(artem["losses"]) == {"total", "content", "style", "tv"}
    text = run("benchmark", "--end-to-end", "--quick", "--iterations", "2", "--no-torch").output
    assert "| seconds per iteration |" in text and "| not run |" in text
    r = run("benchmark", "--end-to-end", "--modes", "bwn", "--layers")
    assert r.exit_code == 1 and "--modes, --layers time the pass, not --end-to-end's whole fp32 run" in r.stderr
    r = run("benchmark", "--quick")
    assert r.exit_code == 1 and "go with --end-to-end" in r.stderr
    r = run("benchmark", "--optimizer", "adam")
    assert r.exit_code == 1 and "go with --end-to-end" in r.stderr
    # options that would be silently ignored
    r = run("benchmark", "--binary-backward", "fp16", "--modes", "fp32,random")
    assert (r.exit_code, r.stderr) == (1, "Error: --binary-backward goes with a bwn or xnor network among --modes\n")
    for args, message in ((["--overwrite"], "give one"),
                          (["--overwrite", "--json", "-"], "and --json - prints the report instead of writing one")):
        r = run("benchmark", *args)
        assert (r.exit_code, r.stderr) == (1, f"Error: --overwrite replaces the --json file{',' if '-' in args else ':'} "
                                              f"{message}\n")
    r = run("benchmark", "--end-to-end", "--quick", "--size", "32", "--iterations", "1")
    assert (r.exit_code, r.stderr) == (1, "Error: --quick sets the size and the iterations, and both are given\n")
    # a network named twice would be timed twice; an empty name is no network
    for modes, message in (("bwn,fp32,bwn:trained", "'bwn' and 'bwn:trained' name the same network"),
                           ("fp32,fp32", "'fp32' is named twice"),
                           ("", "no network named; give modes such as fp32,bwn,xnor,random"),
                           ("fp32,,bwn", "'fp32,,bwn' has an empty name in it (two commas together, or one at an end)")):
        r = run("benchmark", "--modes", modes)
        assert r.exit_code == 2 and r.stderr.endswith(f"Error: Invalid value for '--modes': {message}\n"), r.stderr
    # ... named twice by its file, or by its first binary layer (the shipped xnor's own), before any timing
    for modes, twice in ((f"fp32,xnor,xnor:{REPO / 'weights' / 'xnor.npz'}", "(xnor, binary from conv4_2)"),
                         ("xnor@conv4_2,xnor", "(xnor, binary from conv4_2)")):
        first, second = modes.split(",")[-2:]
        r = run("benchmark", "--size", "32", "--repeats", "1", "--no-torch", "--modes", modes)
        assert (r.exit_code, r.stdout, r.stderr) == (1, "", f"Error: {first!r} and {second!r} are one network {twice}: "
                                                            "give it once\n"), r.output
    # a first binary layer past the pass's deepest tap: the advice in --modes' own terms
    for spec, advice in (("bwn@conv5_3", "bwn@conv5_1 or an earlier layer down to conv3_2"),  # the file's own first
                         ("bwn:untrained@conv5_2", "bwn:untrained@conv5_1 or an earlier layer")):
        r = run("benchmark", "--size", "32", "--repeats", "1", "--no-torch", "--modes", spec)
        assert (r.exit_code, r.stderr) == (1, f"Error: {spec!r}: the first binary convolution, {spec[-7:]}, lies past the "
                                              f"deepest layer tapped (relu5_1): the network would have none; name "
                                              f"{advice}\n"), r.output


def test_benchmark_end_to_end_with_adam(tmp_path, weights_path):
    out = tmp_path / "e2e.json"
    r = run("benchmark", "--end-to-end", "--quick", "--iterations", "3", "--optimizer", "adam", "--no-torch", "--json", out)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["protocol"]["optimizer"] == "adam" and report["protocol"]["lr"] == api.Settings().lr
    assert "history" not in report["protocol"]
    assert report["artem"]["iterations"] == report["artem"]["evaluations"] - 1 == 3  # and the image it ended at
    assert "3 Adam iterations (learning rate 10)" in bench.end_to_end_markdown(report)


def test_the_pytorch_baseline_is_artems_network(weights_path):
    """Where PyTorch is installed (CI installs its CPU build): the network its side times is artem's
    VGG16, feature for feature, and its pass is timed."""
    torch = pytest.importorskip("torch")
    from artem_cli.vgg import VGG16

    w = weights.load(weights_path)
    x = np.random.default_rng(0).standard_normal((3, 40, 56), dtype=np.float32) * 50
    ours = VGG16(w).forward(x, ["relu1_2", "pool3", "relu5_1"])
    theirs, t = {}, torch.from_numpy(x)[None]
    with torch.no_grad():
        for name, layer in bench._torch_vgg(w, "relu5_1", torch.device("cpu")):
            t = layer(t)
            theirs[name] = t[0].numpy()
    for tap, feature in ours.items():
        np.testing.assert_allclose(feature, theirs[tap], rtol=1e-3, atol=1e-4 * float(np.abs(feature).max()), err_msg=tap)
    timed = bench.torch_pass(w, (40, 56), 2)
    assert timed["version"] == torch.__version__ and timed["device"] == "cpu" and 0 < timed["seconds"][0] <= timed["seconds"][1]


def test_end_to_end_runs_the_same_objective_and_optimizer_in_pytorch(weights_path):
    """Where PyTorch is installed (CI has none): its side of the comparison. With Adam (the same
    steps on both sides) it ends where artem does, up to the order of float sums; with L-BFGS, whose
    line searches differ in their details, it runs the same number of iterations."""
    pytest.importorskip("torch")
    report = bench.end_to_end(size=64, iterations=5, with_torch=True, optimizer="adam")
    artem, torch = report["artem"], report["torch"]
    assert artem["iterations"] == torch["iterations"] == torch["evaluations"] == 5
    for term in ("total", "content", "style", "tv"):
        assert artem["losses"][term] == pytest.approx(torch["losses"][term], rel=1e-3), term
    report = bench.end_to_end(size=64, iterations=5, with_torch=True)
    assert report["artem"]["iterations"] == report["torch"]["iterations"] == 5 <= report["torch"]["evaluations"]


class _OutOfMemory(MemoryError):  # as CuPy's OutOfMemoryError: pickled, it does not unpickle
    def __init__(self, size, total):
        super().__init__(f"out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes)")


class _Unsendable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def _raise(kind):
    raise kind(512, 1024)


def test_a_side_run_in_its_own_process_gives_its_result_its_error_or_how_it_died():
    """A side whose process dies (the out-of-memory killer, a crash in a library) is an error that
    says so: the benchmark waited for it forever."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    assert bench._in_own_process(context, pow, (2, 10), api.Interruptible(), "the x side") == 1024
    with pytest.raises(ValueError, match="invalid literal"):
        bench._in_own_process(context, int, ("x",), api.Interruptible(), "the x side")
    for function, args, how in [(signal.raise_signal, (signal.SIGKILL,), "killed by SIGKILL; out of memory?"),
                                (os._exit, (3,), "exit status 3")]:
        with pytest.raises(ArtemError) as e:
            bench._in_own_process(context, function, args, api.Interruptible(), "the x side")
        assert str(e.value) == f"the x side's process ended without a result ({how})"
    # an exception that cannot be rebuilt here comes as its text: a MemoryError still one (the CLI's
    # out-of-memory line), others as a RuntimeError (it escaped as unpickling's TypeError)
    with pytest.raises(MemoryError, match="^out of memory allocating 512 bytes"):
        bench._in_own_process(context, _raise, (_OutOfMemory,), api.Interruptible(), "the x side")
    with pytest.raises(RuntimeError, match="^_Unsendable: 512 and 1024$"):
        bench._in_own_process(context, _raise, (_Unsendable,), api.Interruptible(), "the x side")


def test_a_side_reports_its_own_peak_memory_not_the_benchmarks():
    """Each side of --end-to-end runs in a process of its own so that its peak memory is its own:
    ``ru_maxrss`` survives exec, and a side started after the benchmark peaked (scoring a result)
    reported the benchmark's peak as its own."""
    import multiprocessing

    touched = np.ones(2**26)  # 512 MiB, resident
    del touched
    assert bench._peak_host_memory() > 2**29
    side = bench._in_own_process(multiprocessing.get_context("spawn"), bench._peak_host_memory, (), api.Interruptible(),
                                 "the x side")
    assert side < 2**28  # a Python with NumPy and artem imported: tens of MiB


def test_a_pytorch_that_fails_to_import_is_a_failed_side_not_a_traceback(tmp_path, monkeypatch, weights_path):
    """Installed (its package found) but broken (a missing shared library): the comparison with it
    fails, reported, and artem's figures stand."""
    fake = tmp_path / "site"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('libtorch_cpu.so: cannot open shared object file')\n")
    (fake / "torch-2.13.0.dist-info").mkdir()
    (fake / "torch-2.13.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n")
    monkeypatch.syspath_prepend(str(fake))  # the side's process, spawned, is given this process's sys.path
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # a real one imported by an earlier test: not this one
    r = run("benchmark", "--size", "32", "--repeats", "1")
    assert "artem fp32    best" in r.stdout and "PyTorch: failed (ImportError: libtorch_cpu.so" in r.stdout, r.output
    assert (r.exit_code, r.stderr) == (1, "Error: the torch side of the comparison failed\n")
    r = run("benchmark", "--end-to-end", "--size", "32", "--iterations", "1", "--json", "-")
    report = json.loads(r.stdout)
    assert report["artem"]["iterations"] == 1 and report["machine"]["torch"] == "2.13.0"
    assert report["torch"] == {"error": "ImportError: libtorch_cpu.so: cannot open shared object file"}
    assert (r.exit_code, r.stderr) == (1, "Error: the torch side of the comparison failed\n")


def test_the_gpu_reports_render():
    """The Markdown of the GPU-only reports, on made-up numbers: a GPU session's time is too dear to
    find a formatting error in."""
    layers = {"tf32": True, "gemm_mac_per_s": 2e14, "tf32_gemm_mac_per_s": 4e14, "mma_b1_mac_per_s": 5e15,
              "binary_gemm": {"n": 16384, "seconds": 2e-3, "mac_per_s": 16384**3 / 2e-3, "corner_equals_twin": False},
              "layers": [{"layer": "conv1_1", "input": [3, 8, 8], "macs": 1e6, "fp32_seconds": 1e-4, "fp32_im2col_seconds": 2e-4,
                          "tf32_im2col_seconds": 5e-5},
                         {"layer": "conv1_2", "input": [64, 8, 8], "macs": 1e7, "fp32_seconds": 1e-4,
                          "fp32_im2col_seconds": 2e-4, "tf32_im2col_seconds": 5e-5,
                          "winograd_transforms": {"kernels_seconds": 2e-5, "twins_seconds": 1e-4, "equals_cpu": False},
                          "pack": {"per_pixel": {"seconds": 1e-5, "equals_per_pixel": True},
                                                                "ballot": {"seconds": 4e-6, "equals_per_pixel": False}},
                          "xnor": {"mma": {"seconds": 1e-5, "max_difference_from_direct": 0.0},
                                   "mma_async": {"seconds": 5e-6, "max_difference_from_direct": 0.5}}}]}
    text = bench.gpu_layers_markdown(layers)
    assert "TF32 im2col ms" in text and "0.44 of the mma peak; WRONG" in text and "differs by 0.5" in text
    assert "| pack per_pixel ms | pack ballot ms |" in text and "| 0.010 | 0.004 WRONG |" in text
    assert "| 0.020 / 0.100 WRONG: not the CPU's |" in text and "| 0.200 (0.00) | 0.050 (0.00) |  |" in text  # conv1_1: im2col, no transforms
    assert "TF32 400.0 T MAC/s" in text and "| 0.010 (0.00; 10.0x, 5.0x) |" in text  # mma: x fp32 (here TF32), x im2col in TF32
    run_ = {"seconds": 10.0, "iterations": 500, "evaluations": 510, "seconds_per_iteration": 0.02,
            "peak_memory_bytes": 2**30, "losses": {"total": 4.0, "style": 1.0, "content": 2.0, "tv": 1.0}}
    machine = {"cpu": "x", "cores": 16, "blas": "b", "gpu": "H200", "gpu_clock_mhz": 1980, "cupy": "14", "artem": "0.1",
               "numpy": "2", "numba": "none", "python": "3.12", "torch": "2.11"}
    e2e = {"machine": machine, "protocol": {"content": "c", "style": "s", "size": 512, "iterations": 500, "history": 100,
                                            "device": "cuda"},
           "artem": run_, "artem_graph": {**run_, "seconds": 5.0, "seconds_per_iteration": 0.01, "peak_memory_bytes": None},
           "torch": {**run_, "seconds": 20.0, "version": "2.11", "tf32": False, "threads": 16}}
    e2e["artem_tf32"] = {**run_, "seconds": 2.5, "seconds_per_iteration": 0.005, "losses": {**run_["losses"], "total": 4.4}}
    text = bench.end_to_end_markdown(e2e)
    assert "one CUDA graph (`Settings(cuda_graph=True)`): 5.0 s" in text and "0.50x the default run, 0.25x PyTorch's" in text
    assert ("every float convolution one TF32 GEMM (`Settings(tf32=True)`): 2.5 s, 0.0050 s an iteration (0.25x the default "
            "run, 0.12x PyTorch's), 500 iterations, fp32 total loss 4.4 (1.10x the default run's)") in text
    e2e.update(artem_graph={"error": "NotImplementedError: no"}, torch={"error": "OutOfMemoryError: out"})
    text = bench.end_to_end_markdown(e2e)  # a side that failed says so, and artem's figures stand
    assert "| seconds | 10.0 | failed (below) |" in text and "PyTorch: failed (OutOfMemoryError: out)" in text
    assert "artem with each evaluation one CUDA graph: failed (NotImplementedError: no)" in text


def test_the_gpu_pass_report_renders_graphed_passes_and_their_failures(capsys):
    from artem_cli import cli

    seconds = {"fp32": [0.02, 0.021], "fp32+graph": [0.01, 0.011], "xnor/mma": [0.03, 0.031],
               "xnor/mma+graph": [0.015, 0.016]}
    report = {"machine": {"gpu": "H", "cupy": "14"}, "pass": {"tap": "relu5_1", "macs": 1e11, "seconds": seconds, "sgemm_mac_per_s": 2.5e13,
                                       "torch": None, "graph_errors": {"bwn+graph": "RuntimeError: no"}}}
    cli._pass_report(report, (341, 512), "cuda", False)
    text = capsys.readouterr().out
    assert "artem xnor/mma+graph" in text and "/ artem fp32+graph: 1.50" in text and "/ artem fp32: 1.50" in text
    assert "artem bwn+graph: failed (RuntimeError: no)" in text and "PyTorch: not run (--no-torch)" in text
    assert text.startswith("machine: gpu H, cupy 14\n")


def test_a_graphed_pass_that_fails_fails_the_benchmark(monkeypatch):
    """Reported, and the exit status says so, as a failed side of the comparison does."""
    seconds = {"fp32": [0.02, 0.021], "fp32+graph": [0.01, 0.011]}
    for errors, torch_side, message in [
            ({"bwn+graph": "RuntimeError: no"}, None, "the bwn+graph pass failed"),
            ({"bwn+graph": "E: no", "xnor/mma+graph": "E: no"}, {"error": "E: x"},
             "the torch side of the comparison and the bwn+graph and the xnor/mma+graph passes failed")]:
        monkeypatch.setattr(bench, "network_pass", lambda *a, **k: {
            "shape": [21, 32], "tap": "relu5_1", "macs": 1e9, "seconds": seconds, "sgemm_mac_per_s": 1e13,
            "torch": torch_side, "graph_errors": errors})
        monkeypatch.setattr(bench, "machine", lambda device: {"gpu": "H"})
        r = run("benchmark", "--size", "32", "--repeats", "1")
        assert "artem bwn+graph: failed (" in r.stdout and "artem fp32+graph" in r.stdout, r.output
        assert (r.exit_code, r.stderr) == (1, f"Error: {message}\n")


def test_a_benchmark_whose_timings_spread_widely_says_the_machine_was_busy(monkeypatch):
    """A median far above the best (another process took the cores for part of the run; PyTorch's
    spinning threads suffer most: 10-20x seen) is said, with each side's spread. Timings that agree
    are reported without a note."""
    for torch_seconds, note in (([0.050, 0.052], None), ([0.05, 0.31], "PyTorch 6.2x")):
        monkeypatch.setattr(bench, "network_pass", lambda *a, **k: {
            "shape": [21, 32], "tap": "relu5_1", "macs": 1e9, "seconds": {"fp32": [0.02, 0.021], "xnor": [0.02, 0.04]},
            "torch": {"seconds": torch_seconds, "version": "2.13.0", "threads": 2}})
        monkeypatch.setattr(bench, "machine", lambda device: {"cpu": "C"})
        r = run("benchmark", "--size", "32", "--repeats", "3", "--modes", "fp32,xnor")
        assert r.exit_code == 0, r.output
        assert ("  note: the timings spread widely (median / best: artem xnor 2.0x" + (f", {note}" if note else "")
                + "), as where another process takes the cores: the ratios are less sure; run again when the machine is "
                "idle\n") in r.stdout
    monkeypatch.setattr(bench, "network_pass", lambda *a, **k: {
        "shape": [21, 32], "tap": "relu5_1", "macs": 1e9, "seconds": {"fp32": [0.02, 0.021]}, "torch": None})
    assert "note:" not in run("benchmark", "--size", "32", "--repeats", "3", "--no-torch").stdout


def test_benchmark_on_cuda_without_cupy_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
    r = run("benchmark", "--device", "cuda", "--size", "32", "--repeats", "1")
    assert r.exit_code == 1 and r.stderr.startswith("Error: --device cuda needs CuPy")


def test_dry_run_times_read_in_the_unit_that_suits_them():
    from artem_cli.cli import _duration

    assert [_duration(s) for s in (0.004, 4.23, 42, 95, 3000, 5500, 36000, 4e5, 1e20)] == [
        "0.004 s", "4.2 s", "42 s", "1.6 min", "50.0 min", "1.5 h", "10.0 h", "4.6 days", "3.2e+12 years"]


def test_a_checkout_and_a_cache_that_cannot_be_written_compile_the_kernels_in_a_temporary_folder(tmp_path, weights_path):
    """A service's account: the checkout's __pycache__ and the cache folder cannot take numba's compiled
    kernels (where numba itself fails with a traceback as they load): they go to a folder of the
    process's own, removed at its end."""
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "artem_cli", checkout / "artem_cli", ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "artem_cli" / "__pycache__").write_text("a file where the folder would be")
    (checkout / "weights").mkdir()
    for name in ("manifest.json", "vgg16.npz"):
        (checkout / "weights" / name).symlink_to(REPO / "weights" / name)
    for folder in ("temp", "home", "work"):
        (tmp_path / folder).mkdir()
    env = {**os.environ, "PYTHONPATH": str(checkout), "XDG_CACHE_HOME": str(tmp_path / "a-file"),
           "TMPDIR": str(tmp_path / "temp"), "HOME": str(tmp_path / "home")}
    env.pop("NUMBA_CACHE_DIR", None)
    (tmp_path / "a-file").write_text("")
    where = subprocess.run([sys.executable, "-c", "import os, artem_cli; print(os.environ['NUMBA_CACHE_DIR'])"], env=env,
                           capture_output=True, text=True, cwd=tmp_path / "work")
    assert Path(where.stdout.strip()).parent == tmp_path / "temp", where.stderr  # a folder of its own there
    r = subprocess.run([sys.executable, "-m", "artem_cli", "stylize", CONTENT, STYLE, "--size", "32", "--iterations", "2",
                        "-q", "-o", tmp_path / "o.png"], env=env, capture_output=True, text=True, timeout=600,
                       cwd=tmp_path / "work")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert (tmp_path / "o.png").is_file()
    assert [list((tmp_path / folder).iterdir()) for folder in ("temp", "home", "work")] == [[], [], []]  # removed; nothing else


def test_nowhere_to_cache_the_kernels_is_one_error_line(monkeypatch):
    def uncachable(*args, **kwargs):  # numba's error as a kernel's module loads, with no folder it may write
        raise RuntimeError("cannot cache function 'winograd_input': no locator available for file 'cpu_float.py'")

    monkeypatch.setattr(weights, "info", uncachable)
    r = run("weights", "info")
    assert (r.exit_code, r.stderr) == (1, "Error: numba has nowhere to write artem's compiled kernels (artem_cli/__pycache__, "
                                          "the cache folder and the temporary folder cannot be written here); set "
                                          "NUMBA_CACHE_DIR to a folder that can\n")


def test_numbas_cache_goes_to_artems_cache_folder_where_the_checkout_cannot_take_it(tmp_path, monkeypatch):
    import artem_cli

    monkeypatch.setenv("NUMBA_CACHE_DIR", "")  # none given (and put back as it was after the test)
    writable = artem_cli._writable
    monkeypatch.setattr(artem_cli, "_writable", lambda folder: not folder.endswith("__pycache__") and writable(folder))
    artem_cli._numba_cache()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "cache" / "artem" / "numba")  # XDG_CACHE_HOME's, conftest
    assert (tmp_path / "cache" / "artem" / "numba").is_dir()
    # a relative XDG_CACHE_HOME is ignored (as XDG says), and a home that cannot be found ("~") is no folder: no ./~
    monkeypatch.chdir(tmp_path / "cache")
    for variables in ({"XDG_CACHE_HOME": "relative", "HOME": str(tmp_path / "home")}, {"XDG_CACHE_HOME": "", "HOME": "~"}):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("NUMBA_CACHE_DIR", "")
        artem_cli._numba_cache()
        folder = os.environ["NUMBA_CACHE_DIR"]
        assert os.path.isabs(folder) and not (tmp_path / "cache" / "relative").exists() and not Path("~").exists()
        assert folder == str(tmp_path / "home" / ".cache" / "artem" / "numba") or folder.startswith(tempfile.gettempdir())


def test_installed_command_has_no_traceback_for_a_user_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "artem_cli", "stylize", "nope.jpg", "nope2.jpg"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == "Error: content image 'nope.jpg' does not exist\n"


def DEFAULT_SIGNALS():
    """A child's signals as a terminal's session gives them, whatever the tests were started with (nohup
    ignores SIGHUP, a script's `&` SIGINT: the child would keep them ignored)."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


INTERRUPTED_WHILE_STARTING = """
import importlib.abc, importlib.metadata, os, signal, sys

class CtrlCAtNumPy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":  # the Ctrl-C lands while artem's imports load NumPy
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.{signal})
        return None

sys.meta_path.insert(0, CtrlCAtNumPy())
sys.argv = ["artem", "stylize", "nope.jpg", "nope2.jpg"]
command = next(iter(importlib.metadata.entry_points(group="console_scripts", name="artem")))
sys.exit(command.load()())
"""


def test_the_package_loads_numpy_when_first_asked_for_what_needs_it():
    """What lets the console script catch a Ctrl-C during its imports; artem_cli.api and the rest are
    still there to be asked for."""
    done = subprocess.run([sys.executable, "-c", "import sys, artem_cli; assert 'numpy' not in sys.modules; "
                           "assert artem_cli.api.Stylizer is artem_cli.Stylizer and 'numpy' in sys.modules; "
                           "assert 'Settings' in dir(artem_cli) and artem_cli.score is artem_cli.api.score; artem_cli.nope"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.endswith("AttributeError: module 'artem_cli' has no attribute 'nope'\n")


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_installed_command_ends_a_ctrl_c_while_starting_in_one_line(tmp_path, name):
    # the installed console script, as pip's wrapper runs it, with the signal sent to itself at NumPy's
    # import (a SIGTERM killed it without a word)
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_WHILE_STARTING.replace("{signal}", name)],
                          capture_output=True, text=True, cwd=tmp_path, preexec_fn=DEFAULT_SIGNALS)
    assert (done.returncode, done.stdout) == (128 + signal.Signals[name], "")
    assert done.stderr == f"Interrupted ({name}) while starting: nothing was done\n"


def test_a_signal_the_caller_ignores_stays_ignored(tmp_path, weights_path):
    """`cmd &` in a script starts a job with SIGINT ignored: a Ctrl-C meant for the script must not
    stop it. It goes on (more iterations come after the SIGINT) until a SIGTERM."""
    import select

    run_ = subprocess.Popen([sys.executable, "-m", "artem_cli", "stylize", CONTENT, STYLE, "-o", tmp_path / "o.png",
                             *FAST, "--iterations", "1000000", "--optimizer", "adam", "--print-every", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))

    def line():  # the next line of the losses printed each iteration ("" once it has ended)
        assert select.select([run_.stderr], [], [], 120)[0], "no line in 120 s"
        return run_.stderr.readline()

    try:
        assert line().startswith("iteration 1:")
        run_.send_signal(signal.SIGINT)
        for _ in range(5):  # a SIGINT received reaches the loop within an iteration
            assert line().startswith("iteration "), run_.stderr.read()
        run_.send_signal(signal.SIGTERM)
        stderr = run_.stderr.read()
        run_.wait(timeout=60)
    finally:
        run_.kill()
    assert run_.returncode == 128 + signal.SIGTERM and stderr.endswith(f"Interrupted: saved the image reached so far to "
                                                                       f"{tmp_path / 'o.png'} (SIGTERM)\n"), stderr


NUMPY_OUT_OF_MEMORY = "Unable to allocate 2.54 GiB for an array with shape (64, 10668000) and data type float32"


@pytest.mark.parametrize("command,where,advice,interrupted", [
    (["score", CONTENT, "--content", CONTENT, "--style", STYLE], "api.score", "score smaller images", ""),
    (["visualize", "--layer", "relu1_1", "--channels", "0-1", "--steps", "1", "--size", "32"], "quality.visualize",
     "use a smaller --size or fewer --channels", "; nothing was written"),
    (["benchmark", "--size", "32", "--no-torch"], "bench.network_pass", "use a smaller --size", ""),
    (["distill", "--steps", "1", "--crop", "32", "--batch", "1", "-o", "d.npz"], "distill.distill",
     "use a smaller --crop or --batch", " before the first checkpoint (every 100 steps): nothing to resume"),
])
def test_out_of_memory_and_ctrl_c_in_any_command_are_one_line(command, where, advice, interrupted, tmp_path,
                                                               monkeypatch, weights_path):
    """Running out of memory is one Error line and exit 1 in every command (stylize and batch say
    which size ran out), and Ctrl-C one line and exit 130 (the commands that run long say what they
    kept)."""
    from artem_cli import distill  # noqa: F401  (a module patched)

    monkeypatch.chdir(tmp_path)
    for error, status, line in [(MemoryError(NUMPY_OUT_OF_MEMORY), 1, "Error: out of memory: unable to allocate "
                                 f"2.54 GiB for an array with shape (64, 10668000) and data type float32; {advice}"),
                                (KeyboardInterrupt(), 128 + signal.SIGINT, f"Interrupted (SIGINT){interrupted}")]:
        def fail(*args, **kwargs):
            raise error

        monkeypatch.setattr(f"artem_cli.{where}", fail)
        r = run(*command)
        assert (r.exit_code, r.stderr) == (status, line + "\n"), r.output
    if command[0] == "distill":  # its locks, in the cache
        assert [p.name for p in tmp_path.iterdir()] == ["cache"] and only_locks(tmp_path / "cache")
    else:
        assert list(tmp_path.iterdir()) == []


def test_out_of_memory_on_the_gpu_says_so(monkeypatch):
    import cupy_on_numpy

    def fail(*args, **kwargs):  # as CuPy's pool words it
        raise cupy_on_numpy.OutOfMemoryError("Out of memory allocating 1,024 bytes (allocated so far: 2,048 bytes, "
                                             "limit set to: 2,560 bytes).")

    monkeypatch.setattr(bench, "network_pass", fail)
    r = run("benchmark", "--size", "32", "--no-torch")
    assert (r.exit_code, r.stderr) == (1, "Error: out of memory on the GPU: allocating 1,024 bytes (allocated so far: "
                                          "2,048 bytes, limit set to: 2,560 bytes); use a smaller --size\n")


def test_a_path_the_os_refuses_is_one_error_line(tmp_path, weights_path):
    """A name too long, a loop of symbolic links (Python 3.11's resolve raises RuntimeError there), a
    folder with no name part: one line, exit 1, before any work, nothing written."""
    long = tmp_path / ("x" * 300 + ".png")  # over the 255 bytes a file name may have
    for args in (["stylize", CONTENT, STYLE, "-o", long, *FAST], ["score", long, "--content", CONTENT, "--style", STYLE],
                 ["benchmark", "--json", tmp_path / ("x" * 300 + ".json")]):
        r = run(*args)
        assert r.exit_code == 1 and "File name too long" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert list(tmp_path.iterdir()) == []
    loops = tmp_path / "loops"
    loops.mkdir()
    (loops / "a").symlink_to("b")
    (loops / "b").symlink_to("a")
    (loops / "self.png").symlink_to("self.png")
    (loops / "self.npz").symlink_to("self.npz")
    (loops / "m.onnx").write_bytes(b"not read: its destination is refused first")
    fast_distill = ["--steps", "1", "--crop", "32", "--batch", "1", "-q"]
    for args in (["stylize", CONTENT, STYLE, "-o", loops / "self.png", *FAST],
                 ["stylize", CONTENT, STYLE, "-o", loops / "a" / "x.png", *FAST],
                 ["batch", EXAMPLES, "--style", STYLE, "-o", loops / "a", *FAST],
                 ["compare", "--content", CONTENT, "--style", STYLE, "-o", loops / "a", "--size", "48", "--iterations", "1"],
                 ["weights", "convert", loops / "m.onnx", "--to", loops / "a" / "w.npz"],
                 ["distill", "-o", tmp_path / "d.npz", "--checkpoint", loops / "self.npz", *fast_distill]):
        r = run(*args)
        assert (r.exit_code, len(r.stderr.splitlines())) == (1, 1) and "loop of symbolic links" in r.stderr, (args, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loops"]
    for args, message in ((["stylize", ".", STYLE, *FAST], "Error: content image '.' is a folder, not an image file\n"),
                          (["stylize", "/", STYLE, *FAST], "Error: content image '/' is a folder, not an image file\n"),
                          (["distill", "-o", ".", *fast_distill], "Error: output '.' is a folder\n"),
                          (["distill", "-o", "..", *fast_distill], "Error: output '..' is a folder\n")):
        assert (run(*args).exit_code, run(*args).stderr) == (1, message)
    r = run("distill", "-o", "/", *fast_distill)  # a folder's name by its slash
    assert r.exit_code == 2 and r.stderr.endswith("'/' ends in '/', as a folder's name does; give the file's name\n")


def test_a_pipe_or_a_folder_where_a_file_belongs_is_called_what_it_is(tmp_path, monkeypatch, weights_path):
    """Never read (a pipe would block), and not called empty or missing."""
    import os

    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    for args, message in ((["stylize", pipe, STYLE, *FAST], f"Error: content image '{pipe}' is not a regular file"),
                          (["stylize", CONTENT, STYLE, *FAST, "--weights", pipe], f"Error: weights file '{pipe}' is not "
                                                                                   "a regular file"),
                          (["weights", "info", "--weights", tmp_path], f"Error: weights file '{tmp_path}' is a folder")):
        r = run(*args)
        assert r.exit_code == 1 and r.stderr.startswith(message) and len(r.stderr.splitlines()) == 1, r.stderr
    monkeypatch.setenv("ARTEM_WEIGHTS", str(tmp_path))
    r = run("weights", "info")
    assert (r.exit_code, r.stderr) == (1, f"Error: ARTEM_WEIGHTS points to '{tmp_path}', which is a folder\n")


def test_a_snapshot_that_could_not_be_written_is_refused_before_the_run(tmp_path, weights_path, monkeypatch):
    """--save-every's names are longer than the output's (_00030): the last one's is checked with the
    output's, and a folder of a snapshot's name is refused even with --overwrite; not after the
    iterations before it are lost."""
    monkeypatch.chdir(tmp_path)
    name = "b" * 248 + ".png"  # 252 bytes: the output's name fits, b..b_00002.png (258) does not
    r = run("stylize", CONTENT, STYLE, "-o", name, "--save-every", "2", *FAST)
    assert (r.exit_code, r.stderr) == (1, f"Error: snapshot '{'b' * 248}_00002.png': File name too long\n")
    (tmp_path / "c_00002.png").mkdir()
    r = run("stylize", CONTENT, STYLE, "-o", "c.png", "--save-every", "2", "--overwrite", *FAST)  # the last snapshot
    assert (r.exit_code, r.stderr) == (1, "Error: snapshot 'c_00002.png' is a folder\n")
    r = run("stylize", CONTENT, STYLE, "-o", "c.png", "--save-every", "2", "--overwrite", *FAST, "--iterations", "5")
    assert (r.exit_code, r.stderr) == (1, "Error: snapshot 'c_00002.png' is a folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c_00002.png"]


def test_an_output_that_is_a_link_to_nothing_is_refused_before_the_run_unless_overwritten(tmp_path, weights_path):
    link = tmp_path / "out.png"
    link.symlink_to("nowhere.png")
    # refused before any work (no weights are looked for), not after the run, when it is written
    r = run("stylize", CONTENT, STYLE, "-o", link, *FAST, "--weights", tmp_path / "none.npz")
    assert (r.exit_code, r.stderr) == (1, f"Error: output '{link}' already exists; pass --overwrite to replace it\n")
    assert run("stylize", CONTENT, STYLE, "-o", link, *FAST, "--overwrite").exit_code == 0
    assert link.is_file() and not link.is_symlink() and not (tmp_path / "nowhere.png").exists()


def test_a_binary_network_with_no_binary_layer_the_run_taps_is_refused(tmp_path, weights_path):
    """Its first binary convolution past the deepest layer tapped: an fp32 run under another name."""
    for args, first, deepest in ((["--mode", "bwn", "--binary-weights", "untrained", "--binary-from", "conv5_3"],
                                  "conv5_3", "relu5_1"),
                                 (["--mode", "xnor", "--binary-weights", "untrained", "--style-layers", "relu1_1",
                                   "--content-layers", "relu1_1"], "conv1_2", "relu1_1")):
        r = run("stylize", CONTENT, STYLE, *FAST, "-o", tmp_path / "o.png", *args)
        advice = ("give binary-from conv5_1 or an earlier one, or tap a deeper layer" if deepest == "relu5_1" else
                  "conv1_1, the only convolution tapped, is never binary: tap a deeper layer")  # not binary-from conv1_1
        assert (r.exit_code, r.stderr) == (1, f"Error: the first binary convolution, {first}, lies past the deepest layer "
                                              f"tapped ({deepest}): the network would have none; {advice}\n")
    r = run("benchmark", "--size", "32", "--no-torch", "--repeats", "1", "--modes", "bwn:untrained@conv5_3")
    assert r.exit_code == 1 and "the first binary convolution, conv5_3, lies past" in r.stderr
    # the shipped xnor network is binary from conv4_2 on, which a run tapping down to relu3_2 never reaches
    r = run("stylize", CONTENT, STYLE, *FAST, "-o", tmp_path / "o.png", "--mode", "xnor", "--content-layers", "relu3_2",
            "--style-layers", "relu1_1,relu2_1")
    assert (r.exit_code, r.stderr) == (1, f"Error: '{weights.trained_binary('xnor')}' is binary from conv4_2 on, past the "
                                          "deepest layer tapped (relu3_2): the network would have no binary layer; give "
                                          "binary weights binary from conv3_2 or an earlier one, or tap a deeper layer\n")
    assert not (tmp_path / "o.png").exists()


def test_a_style_image_needs_only_the_depth_of_the_style_layers(tmp_path, weights_path):
    thin = tmp_path / "thin.png"  # 3 px high: enough for relu1_1, not for relu4_2, a content layer
    Image.new("RGB", (400, 3), (200, 40, 40)).save(thin)
    r = run("score", CONTENT, "--content", CONTENT, "--style", thin, "--style-layers", "relu1_1", "--json")
    assert r.exit_code == 0 and set(json.loads(r.stdout)) >= {"content", "style"}, r.output


def test_compare_calibrates_the_binarized_networks_only(tmp_path, weights_path):
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "1", "-o", tmp_path,
            "--modes", "fp32,bwn", "--calibrate")
    assert r.exit_code == 0 and (tmp_path / "quality.md").exists(), r.output
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "1", "-o", tmp_path / "x",
            "--modes", "fp32", "--calibrate")  # it would be ignored
    assert (r.exit_code, r.stderr) == (1, "Error: calibrate weighs the other networks' layers as fp32 weighs them: give a "
                                          "mode besides fp32\n") and not (tmp_path / "x").exists()


def test_distill_never_replaces_a_shipped_binary_network(tmp_path, weights_path, monkeypatch):
    """weights/bwn.npz and xnor.npz are held to their SHA-256 in weights/manifest.json: a training written
    over one (as README's table once showed) made every run of that mode an error until git restored it."""
    from artem_cli import weights

    shipped = tmp_path / "weights"  # the checkout's weights/ as far as artem knows: the real files stay untouched
    shipped.mkdir()
    for name in weights.BINARY_FILES.values():
        shutil.copy(weights.REPO_WEIGHTS_DIR / name, shipped / name)
    monkeypatch.setattr(weights, "REPO_WEIGHTS_DIR", shipped)
    fast_distill = ["--steps", "1", "--crop", "32", "--batch", "1", "-q", "--weights", weights_path]
    for args, what, kind in ((["-o", shipped / "bwn.npz"], "output", "bwn"),  # said before --overwrite is asked for
                             (["-o", shipped / "bwn.npz", "--overwrite"], "output", "bwn"),
                             (["-o", tmp_path / "d.npz", "--checkpoint", shipped / "xnor.npz"], "checkpoint", "xnor")):
        r = run("distill", "--mode", "bwn", *args, *fast_distill)
        assert (r.exit_code, r.stderr) == (1, f"Error: the {what} '{shipped / (kind + '.npz')}' would replace the shipped "
                                              f"{kind} network, which weights/manifest.json holds to its SHA-256; give "
                                              "another name (a network of your own runs with --binary-weights FILE)\n")
    for name in weights.BINARY_FILES.values():
        assert (shipped / name).read_bytes() == (weights.MANIFEST.parent / name).read_bytes()


def test_distill_never_replaces_the_weights_it_learns_from(tmp_path, weights_path):
    teacher = tmp_path / "teacher.npz"
    shutil.copy(weights_path, teacher)
    before = teacher.read_bytes()
    fast_distill = ["--steps", "1", "--crop", "32", "--batch", "1", "-q", "--overwrite", "--weights", teacher]
    for args, what in ((["-o", teacher], "output"), (["-o", tmp_path / "d.npz", "--checkpoint", teacher], "checkpoint")):
        r = run("distill", *args, *fast_distill)
        assert (r.exit_code, r.stderr) == (1, f"Error: the {what} '{teacher}' would replace the VGG16 weights it learns "
                                              "from; give another name\n")
    assert teacher.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["cache", "teacher.npz"]
    assert only_locks(tmp_path / "cache")
    victim = tmp_path / "victim.png"  # --overwrite replaces an earlier checkpoint, not any file of that name
    shutil.copy(CONTENT, victim)
    r = run("distill", "-o", tmp_path / "d.npz", "--checkpoint", victim, *fast_distill[:-2])
    assert (r.exit_code, r.stderr) == (1, f"Error: '{victim}' is not a checkpoint of artem distill, which --overwrite "
                                          "would replace; give another --checkpoint\n")
    assert victim.read_bytes() == (EXAMPLES / "chelsea.png").read_bytes()


def test_a_diverging_distillation_is_one_error_and_writes_no_network(tmp_path, weights_path):
    """The loss of the last step was finite, the step was not: the parameters are checked before
    they are written; NumPy's overflow warnings are not the user's lines."""
    out = tmp_path / "d.npz"
    r = run("distill", "--steps", "1", "--crop", "32", "--batch", "1", "-q", "--lr", "1e308", "-o", out)
    assert (r.exit_code, r.stderr) == (1, "Error: the training diverged at step 1 (the network's parameters are no "
                                          "longer finite); try a smaller --lr\n")
    assert not out.exists()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_stops_a_command_that_takes_no_signals_itself_in_one_line(tmp_path, monkeypatch, weights_path, name):
    """The weights commands take no signals themselves: SIGTERM is one line and 143, SIGHUP 129, as
    Ctrl-C is 130, not a silent death."""
    import os

    info = weights.info

    def terminated(*args, **kwargs):  # while the command works
        os.kill(os.getpid(), signal.Signals[name])
        return info(*args, **kwargs)

    monkeypatch.setattr(weights, "info", terminated)
    before = signal.signal(signal.Signals[name], signal.SIG_DFL)  # as a session gives it (under nohup SIGHUP is ignored)
    try:
        r = run("weights", "info")
        assert (r.exit_code, r.stderr) == (128 + signal.Signals[name], f"Interrupted ({name})\n")
        assert signal.getsignal(signal.Signals[name]) is signal.SIG_DFL  # put back
    finally:
        signal.signal(signal.Signals[name], before)


def _signal_inside_a_callback(number):
    """Send signal ``number`` to this process from inside a C library's call back into Python (libc's
    qsort calling its comparison), where numba's compiler is when it compiles a kernel at its first
    call (llvmlite's callbacks): an exception raised there is printed as "Exception ignored ..." and
    dropped."""
    import ctypes
    import os

    def compare(a, b):
        os.kill(os.getpid(), number)
        return 0  # a handler that raises leaves this undone: ctypes reports the exception and goes on

    pair = (ctypes.c_int * 2)(2, 1)
    ctypes.CDLL(None).qsort(pair, 2, ctypes.sizeof(ctypes.c_int),
                            ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(compare))


@pytest.mark.parametrize("command,line", [
    (["stylize", CONTENT, STYLE, *FAST, "-o", "o.png"], "Interrupted before the first iteration ended (SIGTERM); "
                                                        "nothing was written"),
    (["batch", EXAMPLES, "--style", STYLE, "--exclude", "ihc*", "-o", "out", *FAST],
     "Interrupted (SIGTERM): 0 images done in this run; the manifest keeps every finished image; run again to go on"),
    (["compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "2", "--modes", "fp32", "-o",
      "c"], "Interrupted (SIGTERM): no report written; no result saved yet"),
    (["visualize", "--layer", "relu1_1", "--channels", "0-1", "--steps", "2", "--size", "32", "-o", "v.png"],
     "Interrupted (SIGTERM); nothing was written"),
    (["distill", "--steps", "2", "--crop", "32", "--batch", "1", "-q", "-o", "d.npz"],
     "Interrupted (SIGTERM) before the first checkpoint (every 100 steps): nothing to resume"),
    (["score", CONTENT, "--content", CONTENT, "--style", STYLE], "Interrupted (SIGTERM)"),
    (["benchmark", "--size", "32", "--no-torch", "--repeats", "1", "--layers", "--modes", "fp32,xnor"],
     "Interrupted (SIGTERM); nothing was reported"),
    (["benchmark", "--end-to-end", "--size", "32", "--iterations", "1", "--no-torch"],
     "Interrupted (SIGTERM); nothing was reported"),
    (["stylize", CONTENT, STYLE, "--size", "48", "--dry-run"], "Interrupted (SIGTERM); nothing was predicted"),
    (["batch", EXAMPLES, "--style", STYLE, "-o", "out", "--size", "48", "--dry-run"],
     "Interrupted (SIGTERM); nothing was predicted"),
])
def test_a_signal_while_a_command_prepares_stops_it_at_its_first_step(command, line, tmp_path, monkeypatch,
                                                                      weights_path):
    """A signal while the network is built is recorded, not raised there: numba compiles the kernels
    then, inside llvmlite's callbacks, and imports run (a KeyboardInterrupt raised inside a callback
    was printed as "Exception ignored ..." and dropped; one inside an import's lock once killed the
    process with SIGINT). The command stops at its first step instead: one line, 143, nothing made."""
    monkeypatch.chdir(tmp_path)
    dropped = []  # exceptions Python could not raise (what a C library's callback swallows)
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_type))
    load = weights.load

    def load_after_a_signal(*args, **kwargs):
        _signal_inside_a_callback(signal.SIGTERM)
        return load(*args, **kwargs)

    monkeypatch.setattr(weights, "load", load_after_a_signal)
    r = run(*command)
    assert (r.exit_code, r.stderr, dropped) == (143, line + "\n", []), r.output
    made = [path for path in tmp_path.rglob("*") if path.suffix in (".png", ".npz", ".md")]
    assert all(path.is_relative_to(tmp_path / "cache") for path in made), made  # (distill's training images)


def test_a_long_lbfgs_history_is_counted_in_the_memory_and_named_in_the_advice(tmp_path, weights_path):
    """L-BFGS keeps two (pairs + 1)² matrices of its pairs' products on the host, and copies them in
    each recursion: 298 GiB at 10^5 pairs, which the check left out (the run died out of memory, advised a smaller --size; the dry
    run's probe tried to fill such a history)."""
    for extra in ([], ["--dry-run"]):
        r = run("stylize", CONTENT, STYLE, "-o", tmp_path / "h.png", "--size", "48", "--iterations", "100000",
                "--history", "100000", "-q", *extra)
        assert r.exit_code == 1 and "48x32 run needs about 301.8 GiB more memory" in r.stderr and r.stderr.endswith(
            "use a smaller --size (or --history for L-BFGS)\n"), r.output
    r = run("stylize", CONTENT, STYLE, "--size", "48", "--iterations", "3000", "--history", "3000", "--dry-run")
    assert r.exit_code == 0 and "3000 iterations in about" in r.stdout, r.output


def test_a_library_that_cannot_be_mapped_is_one_error_line_that_names_ulimit(monkeypatch, weights_path):
    """Under a small `ulimit -v`, a library loaded as it is first used fails to map: numba's compiler
    (llvmlite's OSError) or a NumPy module (an ImportError, whose traceback was printed); not the
    library's fault, as its message says."""
    import resource

    for error, reason in [(OSError("Could not find/load shared object file 'libllvmlite.so' from resource location: "
                                   "'llvmlite.binding'. This could mean that the library literally cannot be found"),
                           "Could not find/load shared object file 'libllvmlite.so' from resource location: "
                           "'llvmlite.binding'"),
                          (ImportError("/x/mtrand.so: failed to map segment from shared object"),
                           "/x/mtrand.so: failed to map segment from shared object")]:
        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(api, "score", fail)
        monkeypatch.setattr(resource, "getrlimit", lambda which: (2**30, resource.RLIM_INFINITY))
        r = run("score", CONTENT, "--content", CONTENT, "--style", STYLE)
        assert (r.exit_code, r.stderr) == (1, f"Error: a library could not be loaded ({reason}): the address space that "
                                              "`ulimit -v` leaves (1.00 GiB) is most likely too small to load artem's "
                                              "libraries and run; raise the limit\n")
        monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        r = run("score", CONTENT, "--content", CONTENT, "--style", STYLE)
        assert (r.exit_code, r.stderr) == (1, f"Error: a library could not be loaded ({reason})\n")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (2**30, resource.RLIM_INFINITY))
    for error, line in [(ImportError("libhdf5.so.310: cannot open shared object file: No such file or directory"),
                         "a library could not be loaded (libhdf5.so.310: cannot open shared object file: No such file or "
                         "directory)"),  # missing: no limit's fault
                        (OSError(12, "Cannot allocate memory"), "out of memory (Cannot allocate memory); score smaller "
                                                                "images")]:
        monkeypatch.setattr(api, "score", lambda *args, error=error, **kwargs: (_ for _ in ()).throw(error))
        r = run("score", CONTENT, "--content", CONTENT, "--style", STYLE)
        assert (r.exit_code, r.stderr) == (1, f"Error: {line}\n")


def test_an_image_too_large_for_the_memory_is_one_error_line(tmp_path, monkeypatch, weights_path):
    from artem_cli import io as artem_io

    def no_memory(img):
        raise MemoryError(NUMPY_OUT_OF_MEMORY)

    monkeypatch.setattr(artem_io, "_to_array", no_memory)
    r = run("stylize", CONTENT, STYLE, "-o", tmp_path / "o.png", *FAST)
    assert (r.exit_code, r.stderr) == (1, f"Error: content image '{CONTENT}' is too large for the memory free (451x300)\n")


def test_mode_option_and_its_errors(tmp_path, weights_path):
    r = run("stylize", CONTENT, STYLE, "-o", tmp_path / "x.png", *FAST, "--mode", "xnor", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["settings"]["mode"] == "xnor"
    r = run("stylize", CONTENT, STYLE, "-o", tmp_path / "y.png", *FAST, "--mode", "ternary")
    assert r.exit_code == 2 and "ternary" in r.output


def test_device_option_and_its_errors(tmp_path, weights_path, monkeypatch):
    out = tmp_path / "g.png"
    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
    r = run("stylize", CONTENT, STYLE, "-o", out, *FAST, "--device", "cuda")
    assert r.exit_code == 1 and r.stderr.startswith("Error: --device cuda needs CuPy: pip install -e '.[cuda]' in artem's checkout")
    r = run("stylize", CONTENT, STYLE, "-o", out, *FAST, "--device", "tpu")
    assert r.exit_code == 2 and "tpu" in r.output
    assert not out.exists()


def test_score_command(tmp_path, weights_path):
    r = run("score", CONTENT, "--content", CONTENT, "--style", STYLE, "--json")
    assert r.exit_code == 0, r.output
    losses = json.loads(r.stdout)
    assert losses["content"] == pytest.approx(0, abs=1e-3) and losses["style"] > 0
    # each term weighted as a stylization with those weights weighs it, with its pooling
    r = run("score", CONTENT, "--content", CONTENT, "--style", STYLE, "--json", "--pooling", "avg")
    assert json.loads(r.stdout)["style"] != losses["style"]
    r = run("score", CONTENT, "--content", CONTENT, "--style", STYLE, "--json", "--style-weight", "200", "--tv-weight", "0")
    weighted = json.loads(r.stdout)
    assert weighted["style"] == pytest.approx(2 * losses["style"], rel=1e-6) and weighted["tv"] == 0
    assert weighted["total"] == pytest.approx(weighted["style"] + weighted["content"], rel=1e-6)
    r = run("score", CONTENT, "--content", CONTENT, "--style", STYLE, "--json", "--style-weight", "1e308")
    assert r.exit_code == 1 and r.stdout == "" and r.stderr.startswith("Error: the losses are not all finite (total inf, "
                                                                        "content 0, style inf"), r.output  # not JSON's Infinity
    r = run("score", "missing.png", "--content", CONTENT, "--style", STYLE)
    assert r.exit_code == 1 and r.stderr.startswith("Error: image 'missing.png' does not exist")
    square = tmp_path / "square.png"
    Image.open(CONTENT).convert("RGB").resize((64, 64)).save(square)  # chelsea is 3:2: not a result of it
    r = run("score", square, "--content", CONTENT, "--style", STYLE)
    assert r.exit_code == 1 and "the image is 64x64 but its content at that size is 64x43" in r.stderr, r.output
    thin, narrow, dot = tmp_path / "thin.png", tmp_path / "narrow.png", tmp_path / "dot.png"
    Image.new("RGB", (300, 2)).save(thin)
    Image.new("RGB", (300, 10)).save(narrow)
    Image.new("RGB", (1, 1)).save(dot)
    for args, message in [  # said as of score, which has no --size: the image's own is its size
            ([CONTENT, "--content", CONTENT, "--style", thin], "the style image at 451x3 px is too small for relu5_1, which "
             "needs at least 16 px on each side; at its proportions (300x2) that takes 2325 px on its longest side, more "
             "than --style-scale can give (1804 px): crop it, or tap no layer as deep as relu5_1"),
            ([CONTENT, "--content", CONTENT, "--style", narrow], "the style image at 451x15 px is too small for relu5_1, "
             "which needs at least 16 px on each side; at its proportions (300x10) that takes 465 px on its longest side: "
             "use --style-scale 1.03 or more"),
            ([dot, "--content", dot, "--style", STYLE], "the image is 1x1 px; artem scores images of 16 to 8192 px on "
             "their longest side")]:
        r = run("score", *args)
        assert (r.exit_code, r.stderr) == (1, f"Error: {message}\n"), r.output
    r = run("score", CONTENT, "--content", CONTENT, "--style", narrow, "--style-scale", "1.03")  # as told: the least
    assert r.exit_code == 0, r.output
    r = run("score", CONTENT, "--content", CONTENT, "--style", narrow, "--style-scale", "1.02")
    assert r.exit_code == 1 and "use --style-scale 1.03 or more" in r.stderr


def test_compare_reports_each_optimizations_own_seconds(tmp_path, weights_path, monkeypatch):
    """Each result's seconds are its optimization's, as stylize reports them: not the network's
    building and the first call's compiling too (the first pair's seemed 3-4x slower)."""
    results = []

    def slow_to_build(*args, **kwargs):  # as building the network and compiling its kernels take time first
        time.sleep(0.3)
        results.append(real(*args, **kwargs))
        return results[-1]

    real = quality.stylize
    monkeypatch.setattr(quality, "stylize", slow_to_build)
    rows = quality.compare([CONTENT], [STYLE], tmp_path, size=48, iterations=2, modes=["fp32", "bwn"])
    assert [row["seconds"] for row in rows] == [result.seconds for result in results]
    assert "| optimization, s |" in quality.table(rows).splitlines()[0]


def test_compare_writes_grid_tables_and_results(tmp_path, weights_path):
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "2",
            "--modes", "fp32,bwn,xnor,random", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "grid.png").size == (160 * 5, 20 + 20 + 160)  # names of columns and rows
    quality_md = (tmp_path / "quality.md").read_text()
    assert "| chelsea | ihc | xnor |" in quality_md and "| random |" in quality_md
    assert "relu5_1" in (tmp_path / "fidelity.md").read_text()
    assert len(list(tmp_path.glob("chelsea_ihc_*.png"))) == 4
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--modes", "fp16", "-o", tmp_path)
    assert r.exit_code == 2 and "unknown mode fp16" in r.output
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a_b", "a", "c", "b_c"):
        shutil.copy(CONTENT, images / f"{name}.png")
    r = run("compare", "--content", images / "a_b.png", "--content", images / "a.png", "--style", images / "c.png",
            "--style", images / "b_c.png", "--modes", "fp32", "-o", tmp_path / "new")
    assert (r.exit_code, r.stderr) == (1, f"Error: the results of '{images / 'a_b.png'}' after '{images / 'c.png'}' and of "
                                          f"'{images / 'a.png'}' after '{images / 'b_c.png'}' would have one name, "
                                          "'a_b_c_fp32.png'; rename one image\n")
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "0", "-o", tmp_path / "new")
    assert (r.exit_code, r.stderr) == (1, "Error: size must be between 16 and 8192 pixels, not 0\n")
    assert not (tmp_path / "new").exists()  # no folder left behind
    grid = tmp_path / "grid.png"
    r = run("compare", "--content", grid, "--style", STYLE, "--modes", "fp32", "-o", tmp_path, "--overwrite")
    assert (r.exit_code, r.stderr) == (1, f"Error: '{grid}' would replace an input image; give another --out-dir\n")
    before = (tmp_path / "quality.md").read_bytes()
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "2", "-o", tmp_path,
            "--modes", "fp32,bwn")
    assert r.exit_code == 1 and "already exists (an earlier comparison?); pass --overwrite" in r.stderr
    assert (tmp_path / "quality.md").read_bytes() == before
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "2", "-o", tmp_path,
            "--modes", "fp32", "--overwrite")  # nothing to hold to fp32's Gram matrices: said, not a traceback
    assert r.exit_code == 0 and "no fidelity to fp32 to report" in (tmp_path / "fidelity.md").read_text()
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(CONTENT, other / "chelsea.png")
    thin = tmp_path / "thin.png"
    Image.new("RGB", (400, 20)).save(thin)
    for args, message in [(["--content", CONTENT, "--content", other / "chelsea.png"], "have the name 'chelsea'"),
                          (["--content", CONTENT, "--modes", "bwn"], "needs fp32 among the modes"),
                          (["--content", CONTENT, "--modes", f"fp32,bwn:{tmp_path / 'a' / 'x.npz'},bwn:{tmp_path / 'x.npz'}"],
                           "two of the modes have the name 'bwn-x'"),
                          (["--content", tmp_path / "none.png"], "content image"),
                          (["--content", CONTENT, "--modes", f"fp32,bwn:{tmp_path / 'none.npz'}"],
                           f"binary weights file '{tmp_path / 'none.npz'}' does not exist"),
                          (["--content", CONTENT, "--modes", "fp32,xnor@conv1_2"], "binary-from must be conv"),
                          (["--content", thin], "too small for relu5_1")]:
        r = run("compare", *args, "--style", STYLE, "-o", tmp_path / "fresh", "--size", "48")
        assert r.exit_code == 1 and message in r.stderr, r.output
        assert not (tmp_path / "fresh").exists()


def test_a_signal_while_compare_makes_its_reports_stops_it(tmp_path, monkeypatch, weights_path):
    import os
    import signal

    from artem_cli import quality

    fidelity = quality.fidelity

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # after every optimization has ended
        return fidelity(*args, **kwargs)

    monkeypatch.setattr(quality, "fidelity", signalled)
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "2", "-o", tmp_path,
            "--modes", "fp32")
    assert (r.exit_code, r.stderr.split("\n", 1)[1]) == (  # after the result's line
        130, f"Interrupted (SIGINT): no report written; 1 result saved in '{tmp_path}' (a rerun replaces them with "
             "--overwrite)\n"), r.output
    assert not (tmp_path / "quality.md").exists()


def test_an_interrupted_compare_writes_no_report(tmp_path, monkeypatch, weights_path):
    """A half-optimized result scored as a whole one would make every ratio wrong. Nor is an earlier
    comparison's report left beside the images that replaced its own (--overwrite), nor its results
    beside this one's: a folder of both could not tell them apart."""
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "2", "-o", tmp_path,
            "--modes", "fp32,bwn")
    assert r.exit_code == 0 and (tmp_path / "quality.md").exists() and (tmp_path / "grid.png").exists()
    real = api.Objective.probed
    calls = []

    def interrupted(self, x, probes):
        calls.append(1)
        if len(calls) == 30:
            raise KeyboardInterrupt  # as the signal handler raises it, within the first mode's run
        return real(self, x, probes)

    monkeypatch.setattr(api.Objective, "probed", interrupted)
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "48", "--iterations", "100", "-o", tmp_path,
            "--modes", "fp32,bwn", "--overwrite")
    assert r.stderr.endswith("Interrupted (SIGINT): no report written; no result saved yet\n"), r.output
    assert r.exit_code == 130 and not any((tmp_path / name).exists() for name in ("quality.md", "grid.png", "fidelity.md"))
    assert not list(tmp_path.glob("chelsea_ihc_*.png"))  # nor the earlier results, which it was to replace


def test_visualize_renders_a_grid_that_excites_the_channel(tmp_path, weights_path):
    out = tmp_path / "v.png"
    r = run("visualize", "--layer", "relu2_1", "--channels", "0-1,5", "--size", "32", "--steps", "15", "-o", out)
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (3 * 34 - 2, 32)
    from artem_cli import io as artem_io
    from artem_cli import preprocess, weights
    from artem_cli.vgg import VGG16

    net = VGG16(weights.load(weights_path))
    rgb, _ = artem_io.read_image(out)
    grey = net.forward(preprocess.to_vgg(np.full((3, 32, 32), 0.5, np.float32)), ["conv2_1"])["conv2_1"]
    for tile, channel in enumerate([0, 1, 5]):  # each tile raises its own channel's pre-ReLU activation
        excited = net.forward(preprocess.to_vgg(rgb[:, :, 34 * tile : 34 * tile + 32]), ["conv2_1"])["conv2_1"]
        assert excited[channel].mean() > grey[channel].mean() + 20
    for args, message in [(["--layer", "relu9_9"], "unknown layer"), (["--channels", "600"], "has 128 channels"),
                          # a network binary from a layer past the one shown only: the images were fp32's, named bwn's
                          (["--mode", "bwn"], "bwn.npz' is binary from conv3_2 on, past the deepest layer tapped (relu2_1)"),
                          (["--mode", "xnor:untrained@conv4_2"], "'xnor:untrained@conv4_2': the first binary convolution, "
                           "conv4_2, lies past the deepest layer tapped (relu2_1): the network would have none; name "
                           "xnor:untrained@conv2_1 or an earlier layer, or show a deeper --layer\n"),
                          # the advice names no layer the trained file refuses: it begins at conv3_2
                          (["--mode", "bwn@conv4_1", "--layer", "relu3_2"], "deepest layer tapped (relu3_2): the network "
                           "would have none; name bwn@conv3_2, or show a deeper --layer\n"),
                          (["--mode", "bwn@conv4_1", "--layer", "relu3_3"], "deepest layer tapped (relu3_3): the network "
                           "would have none; name bwn@conv3_3 or an earlier layer down to conv3_2, or show a deeper --layer\n"),
                          (["--mode", "bwn@conv4_1"], "'bwn@conv4_1': the first binary convolution, conv4_1, lies past the "
                           "deepest layer tapped (relu2_1): the network would have none; the trained file begins at "
                           "conv3_2, past it too: name bwn:untrained@conv2_1 or an earlier layer, or show a deeper --layer\n")]:
        r = run("visualize", "--layer", "relu2_1", *args, "--size", "32", "--steps", "1", "-o", tmp_path / "w.png")  # last wins
        assert r.exit_code == 1 and message in r.stderr, r.output
    assert not (tmp_path / "w.png").exists()
    r = run("visualize", "--layer", "pool5", "--size", "16", "--steps", "1", "-o", tmp_path / "w.png")
    assert r.exit_code == 1 and r.stderr == "Error: pool5 is empty at 16 px (it needs at least 32 px); use a larger --size\n"
    assert run("visualize", "--channels", "a-b").exit_code == 2
    for mode, message in (("bogus", "unknown mode bogus"), ("xnor:untrained@conv9_1", "the first binary layer must be one of"),
                          ("fp32,bwn", "'fp32,bwn' names 2 networks; give one")):  # usage errors, as compare's --modes
        r = run("visualize", "--mode", mode)
        assert r.exit_code == 2 and "Invalid value for '--mode'" in r.stderr and message in r.stderr, r.output
    r = run("visualize", "--channels", "5-2")
    assert r.exit_code == 2 and "'5-2': a range goes up (2-5)" in r.output
    r = run("visualize", "--channels", "3-")  # no range (it was channel 3 alone)
    assert r.exit_code == 2 and "'3-': give channels as 0-15 or 0,3,7" in r.output
    r = run("visualize", "--channels", "0-2,1")
    assert r.exit_code == 2 and "'0-2,1': a channel named twice (1)" in r.output
    from artem_cli.cli import ChannelList
    def small_range(*args):  # a huge range's list would fill the memory first
        assert len(range(*args)) <= 256, "a huge list made"
        return range(*args)

    with mock.patch("artem_cli.cli.range", small_range, create=True):
        for value in ("0-999999999999", "0-200,300-400"):  # refused before their lists are made (memory)
            r = run("visualize", "--channels", value)
            assert r.exit_code == 2 and f"'{value}': between 1 and 256 channels, none negative" in r.output
    assert ChannelList().convert("0-255", None, None) == tuple(range(256))
    r = run("visualize", "--layer", "relu3_1", "--channels", "254-256", "--size", "32", "-o", tmp_path / "c.png")
    assert r.exit_code == 1 and r.stderr == "Error: relu3_1 has 256 channels (0-255); channel 256 does not exist\n"
    assert not (tmp_path / "c.png").exists()


def test_an_empty_layer_name_is_said_so():
    for value, message in ((",", "',' has an empty layer name in it"), ("relu1_1,:2", "'relu1_1,:2' has an empty layer "
                                                                                       "name in it"), ("", "no layer named")):
        r = run("score", CONTENT, "--content", CONTENT, "--style", STYLE, "--style-layers", value)
        assert r.exit_code == 2 and r.stderr.endswith(f"Invalid value for '--style-layers': {message}\n"), r.stderr


def test_compare_grid_shows_each_content_as_artem_reads_it(tmp_path, weights_path):
    """Turned as its EXIF orientation says, 16-bit grey scaled, each fitted to its cell (a small
    result enlarged): not the file's raw pixels, which Pillow shows sideways or white."""
    turned, grey = tmp_path / "turned.jpg", tmp_path / "grey16.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to show: the 60x40 pixels are a 40x60 portrait
    Image.new("RGB", (60, 40), (20, 20, 20)).save(turned, exif=exif)
    Image.fromarray(np.full((40, 60), 32768, np.uint16)).save(grey)  # mid-grey in 16 bits
    out = tmp_path / "cmp"
    r = run("compare", "--content", turned, "--content", grey, "--style", STYLE, "--size", "32", "--iterations", "1",
            "--modes", "fp32", "-o", out)
    assert r.exit_code == 0, r.output
    grid = np.asarray(Image.open(out / "grid.png").convert("RGB")).astype(int)
    middle = 20 + 20 + 80  # the first row's cells: labels of columns and of the row above them
    assert (grid[middle, 5] == 255).all() and (grid[middle, 80] < 40).all()  # a portrait: white beside it
    assert abs(grid[middle + 180, 80] - 128).max() <= 2  # the second row's content: mid-grey, not white
    assert (grid[20 + 20 + 10, 160 + 80] != 255).any()  # the 32 px result, enlarged, reaches its cell's top


def test_compare_keeps_the_contents_alpha_in_its_results_as_stylize_does(tmp_path, weights_path):
    """Its results were written opaque."""
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., :3], rgba[:, 30:, 3], rgba[:, :30, 3] = 90, 255, 0  # the left half transparent
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    r = run("compare", "--content", tmp_path / "cut.png", "--style", STYLE, "--size", "30", "--iterations", "1",
            "--modes", "fp32", "-o", tmp_path / "cmp")
    assert r.exit_code == 0, r.output
    result = Image.open(tmp_path / "cmp" / "cut_ihc_fp32.png")
    assert result.mode == "RGBA" and result.size == (30, 20)
    alpha = np.asarray(result)[..., 3].astype(int)
    assert (alpha[:, :14] < 10).all() and (alpha[:, 16:] > 245).all()
    # a flat grey content: fp32 brings its content loss to 0, which has no ratio (a ZeroDivisionError traceback)
    assert "| fp32 | 1 | n/a |" in (tmp_path / "cmp" / "quality.md").read_text()


def test_compare_refuses_before_any_work_and_takes_any_file_name(tmp_path, weights_path):
    """A network that would not be binary where it taps, an output folder it cannot write: refused
    before the first stylization (which left a result behind). A file name that is no UTF-8 (Linux
    allows any bytes): its reports are written."""
    import os

    out = tmp_path / "cmp"
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "32", "--iterations", "1", "-o", out,
            "--modes", "fp32,xnor:untrained@conv5_3")
    assert r.exit_code == 1 and "the first binary convolution, conv5_3, lies past" in r.stderr, r.output
    assert not out.exists() or not list(out.iterdir())
    # one network under two names (the shipped bwn begins at conv3_2, the shipped file is "trained")
    for twice in ("bwn,bwn@conv3_2", f"bwn@conv3_2,bwn:{REPO / 'weights' / 'bwn.npz'}", "bwn:untrained,bwn:untrained@conv1_2"):
        r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "32", "--iterations", "1", "-o", out,
                "--modes", f"fp32,{twice}")
        first, second = twice.split(",")
        assert (r.exit_code, r.stderr) == (1, f"Error: {first!r} and {second!r} are one network (bwn, binary from "
                                              f"{'conv1_2' if 'untrained' in first else 'conv3_2'}): give it once\n"), r.output
        assert not out.exists() or not list(out.iterdir())
    access = os.access
    with mock.patch.object(os, "access", lambda path, mode: not (mode & os.W_OK and str(path) == str(out))
                           and access(path, mode)):  # as a read-only folder refuses (root passes permission bits)
        r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "32", "--iterations", "1", "-o", out,
                "--modes", "fp32")
    assert (r.exit_code, r.stderr) == (1, f"Error: output folder '{out}' is not writable\n") and not list(out.iterdir())
    odd = tmp_path / os.fsdecode(b"bad\xffname.png")
    shutil.copy(CONTENT, odd)
    r = run("compare", "--content", odd, "--style", STYLE, "--size", "32", "--iterations", "1", "-o", out, "--modes", "fp32")
    assert r.exit_code == 0 and b"bad\xffname" in (out / "quality.md").read_bytes(), r.output
    (tmp_path / "fresh" / "chelsea_ihc_fp32.png").mkdir(parents=True)  # a folder where a result goes
    r = run("compare", "--content", CONTENT, "--style", STYLE, "--size", "32", "--iterations", "1", "-o",
            tmp_path / "fresh", "--modes", "fp32", "--overwrite")
    assert (r.exit_code, r.stderr) == (1, f"Error: '{tmp_path / 'fresh' / 'chelsea_ihc_fp32.png'}' is a folder, where "
                                          "compare writes a file of that name\n"), r.output


def test_output_into_a_pipe_nobody_reads_ends_quietly(weights_path):
    """`artem weights info | head -1`: once head has gone, artem's writes fail; it stops without a word
    (as other tools do), exit status 128 + SIGPIPE, not an error line about a broken pipe."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader gone before the first line: every write fails
    try:
        done = subprocess.run([sys.executable, "-m", "artem_cli", "weights", "info"], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=REPO)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (128 + signal.SIGPIPE, "")


def test_a_file_name_with_a_newline_or_an_escape_stays_one_line_in_errors(tmp_path, weights_path):
    """Linux lets a file's name hold a newline or a terminal's escape: an error naming it was two lines
    (or recoloured the terminal). Control characters are written as escapes; the file is still read."""
    broken = tmp_path / "bro\nken\x1b[31m.png"
    broken.write_text("not an image")
    r = run("stylize", broken, STYLE, "-o", tmp_path / "o.png")
    assert (r.exit_code, r.stderr) == (1, f"Error: content image '{tmp_path}/bro\\nken\\x1b[31m.png' is not an image "
                                          "file Pillow can read\n")
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/odd\xffbyte.png"))  # a byte no UTF-8 (Latin-1's ÿ): shown as it
    odd.write_text("not an image")
    r = run("stylize", odd, STYLE, "-o", tmp_path / "o.png")
    assert (r.exit_code, r.stderr) == (1, f"Error: content image '{tmp_path}/odd\\xffbyte.png' is not an image "
                                          "file Pillow can read\n")
    odd.unlink()
    photos = tmp_path / "photos"
    photos.mkdir()
    broken.rename(photos / broken.name)
    shutil.copy(CONTENT, photos / "a\nb.png")
    r = run("batch", photos, "--style", STYLE, "-o", tmp_path / "out", *FAST[:-1])  # not quiet: a line an image
    assert r.exit_code == 1 and all("\x1b" not in line and ("\\n" in line) == ("b.png" in line or "ken" in line)
                                    for line in r.stderr.splitlines()), r.stderr
    assert "a\\nb.png: 3 iterations in " in r.stderr and "  failed: bro\\nken\\x1b[31m.png: content image" in r.stderr
    assert (tmp_path / "out" / "a\nb.png").is_file()
    (photos / "c\x9bd.png").symlink_to(photos / "a\nb.png")  # a C1 control (CSI) too
    for args in (["-o", tmp_path / "dry", "--dry-run"], ["-o", tmp_path / "out\n2"]):  # each line that names a file
        r = run("batch", photos, "--style", STYLE, *args, *FAST[:-1])
        assert r.exit_code == 1 and not any(c in r.output for c in "\x1b\x9b"), r.output
        lines = r.output.splitlines()
        assert len(lines) == len([line for line in lines if line.startswith((f"{photos}/", "would fail", "a\\nb", "c\\x9bd",
                                                                            "  failed", "failed", "all 2 images", "Error",
                                                                            f"{tmp_path}/out\\n2"))]), r.output


def test_without_o_a_content_folder_that_cannot_be_written_is_told_to_give_o(tmp_path):
    """The result goes beside the content without -o: where that folder is read-only, the error says
    so and what to do (it named only "output folder 'photos' is not writable")."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CONTENT, photos / "a.png")
    access = os.access
    with mock.patch.object(os, "access", lambda path, mode: not (mode & os.W_OK and str(path) == str(photos))
                           and access(path, mode)):  # as a read-only folder refuses (root passes permission bits)
        for dry_run in ([], ["--dry-run"]):
            r = run("stylize", photos / "a.png", STYLE, "--size", "32", "--iterations", "1", *dry_run)
            assert (r.exit_code, r.stderr) == (1, f"Error: the content image's folder '{photos}', where its result goes "
                                                  "without -o, is not writable; give -o\n"), r.output
    assert os.listdir(photos) == ["a.png"]


def test_a_trained_binary_network_runs_only_on_the_vgg16_it_learnt_from(tmp_path, weights_path):
    """The shipped networks learnt from the reference VGG16; a file of `artem distill` records its own
    teacher. On other --weights each command that would paint, score or time such a network refuses it
    before any work, in one line; untrained binarization and fp32 take any weights; a file that records
    no teacher (made before 2026-12-07) is taken at its word."""
    other = tmp_path / "other.npz"
    weights.save({k: v * 1.5 for k, v in weights.load(weights_path).items()}, other, "test")
    small = ["--size", "32", "--iterations", "1", "--style-layers", "relu1_1,relu4_1", "--content-layers", "relu4_2"]
    out = tmp_path / "out.png"
    shipped = REPO / "weights" / "bwn.npz"
    refused = (f"Error: the trained bwn network ('{shipped}') learnt from the reference VGG16, not from '{other}'; use "
               f"--binary-weights untrained with these weights, or train a network on them (artem distill --mode bwn "
               f"--weights {other})\n")
    r = run("stylize", CONTENT, STYLE, "-o", out, *small, "--mode", "bwn", "--weights", other)
    assert (r.exit_code, r.stderr) == (1, refused) and not out.exists(), r.output
    with pytest.raises(ArtemError, match="learnt from the reference VGG16"):
        api.Stylizer(api.Settings(mode="bwn"), weights_path=other)
    from artem_cli import quality

    with pytest.raises(ArtemError, match="learnt from the reference VGG16"):
        quality.fidelity([CONTENT], 32, modes=("bwn",), weights_path=other)
    for args in (["benchmark", "--size", "32", "--repeats", "1", "--modes", "fp32,bwn"],
                 ["compare", "--content", CONTENT, "--style", STYLE, "-o", tmp_path / "cmp", "--size", "32",
                  "--iterations", "1", "--modes", "fp32,bwn"],
                 ["visualize", "--layer", "relu4_1", "-o", tmp_path / "v.png", "--mode", "bwn", "--steps", "1"],
                 ["batch", EXAMPLES, "--style", STYLE, "-o", tmp_path / "b", *small, "--mode", "bwn"],
                 ["stylize", CONTENT, STYLE, "-o", out, *small, "--mode", "bwn", "--dry-run"],
                 ["batch", EXAMPLES, "--style", STYLE, "-o", tmp_path / "b", *small, "--mode", "bwn", "--dry-run"]):
        r = run(*args, "--weights", other)
        assert (r.exit_code, r.stderr) == (1, refused), (args, r.output)
    for path, what in ((tmp_path / "missing.npz", "does not exist"), (tmp_path, "is a folder")):  # said so, first
        r = run("stylize", CONTENT, STYLE, "-o", out, *small, "--mode", "bwn", "--binary-weights", path, "--weights", other)
        assert (r.exit_code, r.stderr) == (1, f"Error: binary weights file '{path}' {what}\n"), r.output
        with pytest.raises(ArtemError, match=f"^binary weights file '{path}' {what}$"):
            api.Stylizer(api.Settings(mode="bwn", binary_weights=str(path)))
    copy = tmp_path / "copy_of_bwn.npz"  # the shipped network by a path, or copied: the same network
    shutil.copy(shipped, copy)
    for path in (shipped, copy):
        r = run("stylize", CONTENT, STYLE, "-o", out, *small, "--mode", "bwn", "--binary-weights", path, "--weights", other)
        assert r.exit_code == 1 and r.stderr == refused.replace(f"('{shipped}')", f"('{path}')"), r.output
    assert not (tmp_path / "cmp").exists() or not list((tmp_path / "cmp").iterdir())
    assert not (tmp_path / "b").exists() and not (tmp_path / "v.png").exists()
    for mode in (["--mode", "bwn", "--binary-weights", "untrained"], ["--mode", "fp32"]):
        r = run("stylize", CONTENT, STYLE, "-o", out, *small, *mode, "--weights", other, "--overwrite", "-q")
        assert r.exit_code == 0, r.output
    # a network of one's own, trained on `other`: taken with it, refused with the reference
    layers, meta = weights.load_binary(shipped)
    mine = tmp_path / "mine.npz"
    weights.save_binary(layers, mine, {"mode": "bwn", "teacher_sha256": weights.checksum(other)})
    r = run("stylize", CONTENT, STYLE, "-o", out, *small, "--mode", "bwn", "--binary-weights", mine, "--weights", other,
            "--overwrite", "-q")
    assert r.exit_code == 0, r.output
    r = run("stylize", CONTENT, STYLE, "-o", out, *small, "--mode", "bwn", "--binary-weights", mine, "--overwrite")
    assert r.exit_code == 1 and r.stderr.startswith(f"Error: '{mine}' learnt from another VGG16, not from '{weights_path}'")
    # weights info, which says which networks the modes use, says so too (it named them, usable or not)
    for args, line in ((["--weights", other], f"bwn network: none with these VGG16 weights: {refused[7:-1]}"),
                       (["--binary-weights", mine], f"bwn network: none with these VGG16 weights: '{mine}' learnt from "
                                                    f"another VGG16, not from '{weights_path}'"),
                       (["--binary-weights", mine, "--weights", other], f"bwn network: trained (your file): {mine} (")):
        r = run("weights", "info", *args)
        assert r.exit_code == 0 and any(out_line.startswith(line) for out_line in r.stdout.splitlines()), (args, r.output)
    weights.save_binary(layers, mine, {"mode": "bwn"})
    r = run("stylize", CONTENT, STYLE, "-o", out, *small, "--mode", "bwn", "--binary-weights", mine, "--weights", other,
            "--overwrite", "-q")
    assert r.exit_code == 0, r.output
