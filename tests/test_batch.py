"""`artem batch`: a folder with a bad file, reruns that skip what is done, changed settings, a batch
killed and resumed, frames started from the previous result."""
import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from artem_cli import api, batch, io
from artem_cli.backend import THREADS
from artem_cli.cli import main
from artem_cli.errors import ArtemError
from conftest import EXAMPLES, REPO, on_a_terminal, spawned_children

STYLE = str(EXAMPLES / "ihc.png")
FAST = ["--size", "40", "--iterations", "3", "--style-layers", "relu1_1,relu2_1,relu3_1", "--content-layers", "relu3_2"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def folder(tmp_path):
    """chelsea, coffee, a text file renamed .png, and a non-image file."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(EXAMPLES / "chelsea.png", src / "chelsea.png")
    shutil.copy(EXAMPLES / "coffee.png", src / "coffee.png")
    (src / "broken.png").write_text("not an image")
    (src / "notes.txt").write_text("not an image either, and not .png: ignored")
    return src


def manifest(out):
    return json.loads((out / batch.MANIFEST).read_text())


@pytest.mark.parametrize("full", ["results", "everything", "read-only"])
@pytest.mark.parametrize("where", ["here", "workers"])
def test_a_full_disk_stops_the_batch_at_the_first_result_it_cannot_write(where, full, tmp_path, weights_path,
                                                                          monkeypatch):
    """On a full disk a batch painted every later image (minutes each at the default size) to fail
    each alike as it was written. It stops at the first write that finds no room, the result's or the
    manifest's: that image failed (recorded where the manifest still fits), one line that says why and
    what to do, --json's summary of what was done, the images done before kept, none painted after."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        shutil.copy(EXAMPLES / "chelsea.png", src / name)
    (src / "0bad.png").write_text("not an image")  # a failure before: -q lists it with the rest (it was lost)
    out = tmp_path / "out"
    if full == "results":  # b.png finds no room; the manifest, smaller, still does
        atomic_write, saved = io.atomic_write, []

        def full_after_one(path, write, overwrite=True):
            if Path(path).name != batch.MANIFEST:
                if saved:
                    def write(f):
                        f.write(b"the first bytes")
                        raise OSError(errno.ENOSPC, "No space left on device")
                saved.append(path)
            return atomic_write(path, write, overwrite)

        monkeypatch.setattr(io, "atomic_write", full_after_one)
    else:  # from the moment a.png is there, no write finds room (or the disk turns read-only): a.png's record first
        fsync, code = os.fsync, errno.ENOSPC if full == "everything" else errno.EROFS

        def full_once_a_is_there(fd):  # atomic_write's last step before the rename
            if (out / "a.png").exists():
                raise OSError(code, os.strerror(code))
            return fsync(fd)

        monkeypatch.setattr(os, "fsync", full_once_a_is_there)
    r = run("batch", src, "--style", STYLE, "-o", out, *FAST, "-q", "--json",
            *(["--workers", "1"] if where == "workers" else []))
    assert r.exit_code == 1
    summary = json.loads(r.stdout)
    then = "run it again once the output folder can be written" if full == "read-only" else "free some space and run it again"
    stops = (f"; the batch stops here, as every later image would fail alike: {then} "
             f"({len(summary['done'])} image{'s' * (len(summary['done']) != 1)} painted and recorded in this run)\n")
    failures = "".join(f"  failed: {key}: {error}\n" for key, error in summary["failed"].items())  # -q: listed at the end
    if full == "results":
        assert r.stderr == f"{failures}Error: cannot write '{out / 'b.png'}' (No space left on device){stops}", r.output
        assert (summary["done"], list(summary["failed"])) == (["a.png"], ["0bad.png", "b.png"])
        entries = manifest(out)["images"]
        assert entries["a.png"]["state"] == "done" and entries["b.png"]["state"] == "failed"
        if where == "here":  # a cluster may have painted later images already: they are not written
            assert sorted(entries) == ["0bad.png", "a.png", "b.png"]
    else:
        assert r.stderr == f"{failures}Error: cannot write '{out / batch.MANIFEST}' ({os.strerror(code)}){stops}", r.output
        assert (summary["done"], list(summary["failed"])) == ([], ["0bad.png", "a.png"])
    assert sorted(p.name for p in out.iterdir()) == ["a.png", batch.MANIFEST]


def test_a_bad_file_is_reported_and_skipped_and_the_rest_is_done(folder, tmp_path, weights_path):
    """A damaged file, a link to nothing and a pipe with an image's name: each failed, saying what it
    is (not left out unsaid, nor read: a pipe would block); the rest painted."""
    out = tmp_path / "out"
    (folder / "gone.png").symlink_to("nothere.png")
    os.mkfifo(folder / "pipe.png")
    Image.new("RGB", (300, 2)).save(folder / "thin.png")  # 40x1 at --size 40; relu3_2 needs 4 px
    (folder / "empty.jpg").touch()  # its output is empty.png: each output named with its content
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 1
    summary = json.loads(r.stdout)
    assert summary.pop("contents") == {"chelsea.png": "chelsea.png", "coffee.png": "coffee.png", "broken.png": "broken.png",
                                       "gone.png": "gone.png", "pipe.png": "pipe.png", "thin.png": "thin.png",
                                       "empty.png": "empty.jpg"}
    assert summary["failed"].pop("empty.png") == f"content image '{folder / 'empty.jpg'}' is an empty file"
    assert f"  failed: empty.jpg (for empty.png): content image '{folder / 'empty.jpg'}' is an empty file\n" in r.stderr
    (folder / "empty.jpg").unlink()
    # the advice in the image's proportions, as stylize gives it (not in those of the image made small)
    assert summary["failed"].pop("thin.png") == ("the content image at 40x1 px is too small for relu3_2, which needs at "
                                                 "least 4 px on each side; at its proportions (300x2) that takes 525 px "
                                                 "on its longest side: use --size 525 or more (with --style-scale 0.076 to "
                                                 "keep the style images about their size now)")
    (folder / "thin.png").unlink()
    assert summary["done"] == ["chelsea.png", "coffee.png"]
    assert summary["failed"] == {"broken.png": f"content image '{folder / 'broken.png'}' is not an image file Pillow can read",
                                 "gone.png": f"content image '{folder / 'gone.png'}' is a link to nothing (or a loop of links)",
                                 "pipe.png": f"content image '{folder / 'pipe.png'}' is not a regular file (a device or a pipe?)"}
    assert "failed: broken.png: content image" in r.stderr and "2 painted, 0 done before, 5 failed" in r.stderr
    (folder / "gone.png").unlink()
    (folder / "pipe.png").unlink()
    for name in ("chelsea.png", "coffee.png"):
        assert Image.open(out / name).size[0] == 40
    images = manifest(out)["images"]
    assert images["broken.png"]["state"] == "failed" and images["coffee.png"]["state"] == "done"
    assert sorted(p.name for p in out.iterdir()) == ["artem-batch.json", "chelsea.png", "coffee.png"]


def test_a_rerun_skips_what_is_done_and_a_changed_setting_is_refused(folder, tmp_path, weights_path):
    out = tmp_path / "out"
    (folder / "broken.png").unlink()
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q").exit_code == 0
    before = (out / "coffee.png").stat().st_mtime_ns
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea.png", "coffee.png"]
    assert (out / "coffee.png").stat().st_mtime_ns == before
    (out / "coffee.png").unlink()  # a lost output is painted again
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")
    assert json.loads(r.stdout)["done"] == ["coffee.png"]
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--tv-weight", "3", "-q")
    assert r.exit_code == 1 and "other settings (changed: --tv-weight)" in r.stderr and "--force" in r.stderr
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--tv-weight", "3", "-q", "--json", "--force")
    assert r.exit_code == 0 and json.loads(r.stdout)["done"] == ["chelsea.png", "coffee.png"]


def test_a_resume_is_refused_where_the_styles_order_or_the_networks_changed_and_not_for_another_name(
        folder, tmp_path, weights_path, monkeypatch):
    """The style files count by their contents in their order (--style-blend weighs them in it), not
    by how they are named; the networks by their files' contents (--weights)."""
    (folder / "broken.png").unlink()
    out, other = tmp_path / "out", str(EXAMPLES / "coffee.png")
    blend = ["--style-blend", "0.9,0.1"]
    assert run("batch", folder, "--style", STYLE, "--style", other, *blend, "-o", out, *FAST, "-q").exit_code == 0
    monkeypatch.chdir(EXAMPLES)  # the same files, named otherwise
    r = run("batch", folder, "--style", "ihc.png", "--style", "./coffee.png", *blend, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea.png", "coffee.png"], r.output
    r = run("batch", folder, "--style", other, "--style", STYLE, *blend, "-o", out, *FAST, "-q")
    assert r.exit_code == 1 and f"other settings (changed: styles ({other}, {STYLE}))" in r.stderr, r.output
    scaled = tmp_path / "scaled.npz"
    from artem_cli import weights
    weights.save({k: v * 1.5 for k, v in weights.load(weights_path).items()}, scaled, "test")
    r = run("batch", folder, "--style", STYLE, "--style", other, *blend, "-o", out, *FAST, "-q", "--weights", scaled)
    assert r.exit_code == 1 and "other settings (changed: networks)" in r.stderr, r.output


def _as_an_earlier_artem_wrote_it(out, styles, networks=True):
    """The manifest in ``out`` made as an artem that recorded the batch's ``styles`` (not each
    image's) wrote it, with or without the ``networks``."""
    data = manifest(out)
    for entry in data["images"].values():
        del entry["styles_sha256"]
    data["record"]["styles"] = styles
    if not networks:
        del data["record"]["networks"]
    data["fingerprint"] = "an earlier artem's"
    (out / batch.MANIFEST).write_text(json.dumps(data))
    return data


def test_a_manifest_of_an_earlier_artem_resumes(folder, tmp_path, weights_path):
    """Written before a setting was added (here: one left at its default), before the networks were
    recorded, with the style files as (path, SHA-256) pairs: the same batch, as it is when written
    with each style set's contents in order; each image then records its style files. A setting
    changed since is still refused."""
    (folder / "broken.png").unlink()
    out, sha = tmp_path / "out", batch._sha256(STYLE)
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q").exit_code == 0
    images = manifest(out)["images"]
    for styles, networks in [([[STYLE, sha]], False), ([[sha]], True)]:
        data = _as_an_earlier_artem_wrote_it(out, styles, networks)
        if not networks:
            del data["record"]["settings"]["tf32"]
            (out / batch.MANIFEST).write_text(json.dumps(data))
        r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea.png", "coffee.png"], r.output
        assert manifest(out)["record"]["networks"]["vgg16"] and manifest(out)["fingerprint"] != "an earlier artem's"
        assert "styles" not in manifest(out)["record"] and manifest(out)["images"] == images
    # upgraded by a run that leaves an image out: that one's style files are the batch's one set
    _as_an_earlier_artem_wrote_it(out, [[sha]])
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json", "--exclude", "coffee.png")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea.png"], r.output
    assert manifest(out)["images"] == images
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea.png", "coffee.png"], r.output
    _as_an_earlier_artem_wrote_it(out, [[batch._sha256(EXAMPLES / "coffee.png")]])
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q")
    assert r.exit_code == 1 and "(changed: styles)" in r.stderr
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--tv-weight", "2")
    assert r.exit_code == 1 and "(changed: --tv-weight, styles)" in r.stderr


def test_binary_from_counts_as_run_the_networks_own_first_layer_given_or_not(folder, tmp_path, weights_path):
    """The shipped bwn network is binary from conv3_2: --binary-from conv3_2 paints as leaving it out
    does, so either resumes the other's batch, and one recorded by an earlier artem (binary-from as
    given: none). Untrained weights begin at conv1_2; another first layer is a change."""
    (folder / "broken.png").unlink()
    out, skipped = tmp_path / "out", ["chelsea.png", "coffee.png"]
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--mode", "bwn", "-q").exit_code == 0
    assert manifest(out)["record"]["settings"]["binary_from"] == "conv3_2"
    for given in (["--binary-from", "conv3_2"], []):
        r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--mode", "bwn", *given, "-q", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == skipped, r.output
        data = manifest(out)
        data["record"]["settings"]["binary_from"], data["fingerprint"] = None, "an earlier artem's"
        (out / batch.MANIFEST).write_text(json.dumps(data))
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--mode", "bwn", "--binary-from", "conv3_2", "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == skipped, r.output
    # the same file named by a path, relative or not (their contents decide: "networks")
    for path in (REPO / "weights" / "bwn.npz", os.path.relpath(REPO / "weights" / "bwn.npz")):
        r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--mode", "bwn", "--binary-weights", path, "-q", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == skipped, r.output
    untrained = [*FAST, "--mode", "bwn", "--binary-weights", "untrained", "-q", "--json"]
    assert run("batch", folder, "--style", STYLE, "-o", tmp_path / "u", *untrained).exit_code == 0
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "u", *untrained, "--binary-from", "conv1_2")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == skipped, r.output
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "u", *untrained, "--binary-from", "conv2_1")
    assert r.exit_code == 1 and "(changed: --binary-from)" in r.stderr, r.output


def test_frames_given_the_first_iterations_the_default_gives_resume_and_other_ones_are_named(folder, tmp_path,
                                                                                              weights_path):
    (folder / "broken.png").unlink()
    out, frames = tmp_path / "out", ["--init", "previous", *FAST, "-q"]
    assert run("batch", folder, "--style", STYLE, "-o", out, *frames, "--first-iterations", "3").exit_code == 0
    r = run("batch", folder, "--style", STYLE, "-o", out, *frames, "--json")  # FAST's --iterations 3: the same
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea.png", "coffee.png"], r.output
    r = run("batch", folder, "--style", STYLE, "-o", out, *frames, "--first-iterations", "5")
    assert r.exit_code == 1 and "(changed: --first-iterations)" in r.stderr, r.output
    # the first frame's iterations as run follow from --iterations and --init: named only where given
    r = run("batch", folder, "--style", STYLE, "-o", out, *frames, "--iterations", "4")
    assert r.exit_code == 1 and "(changed: --iterations)" in r.stderr, r.output
    r = run("batch", folder, "--style", STYLE, "-o", out, *frames[2:])
    assert r.exit_code == 1 and "(changed: --init)" in r.stderr, r.output


def test_an_interrupted_batch_still_prints_its_json_summary(folder, tmp_path, weights_path, monkeypatch):
    """--json: what this run did, with "interrupted", as stylize --json does; the one line on stderr."""
    (folder / "broken.png").unlink()
    done = batch._Batch.done

    def then_terminated(self, *args, **kwargs):
        entry = done(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # between two images: the batch stops before the next
        return entry

    monkeypatch.setattr(batch._Batch, "done", then_terminated)
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "out", *FAST, "-q", "--json")
    summary = json.loads(r.stdout)
    assert (r.exit_code, summary["done"], summary["interrupted"]) == (143, ["chelsea.png"], True), r.output
    assert r.stderr == ("Interrupted (SIGTERM): 1 image done in this run; the manifest keeps every finished image; "
                        "run again to go on\n")


def test_a_signal_after_the_last_image_still_sets_the_exit_status(folder, tmp_path, weights_path, monkeypatch):
    """As the batch closes (its manifest, its cluster) every image is done: the signal is said in one
    line and gives the exit status, as stylize does after its last iteration (it exited 0)."""
    (folder / "broken.png").unlink()
    done, count = batch._Batch.done, []

    def the_last_then_terminated(self, *args, **kwargs):
        entry = done(self, *args, **kwargs)
        count.append(1)
        if len(count) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return entry

    monkeypatch.setattr(batch._Batch, "done", the_last_then_terminated)
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "out", *FAST, "-q")
    assert (r.exit_code, r.stderr.splitlines()[1:]) == (143, ["SIGTERM arrived after the last image; every result is saved"])
    assert sorted(manifest(tmp_path / "out")["images"]) == ["chelsea.png", "coffee.png"]


def test_a_style_added_to_the_style_folder_paints_only_its_pairs(folder, tmp_path, weights_path):
    """A painting added to --style-dir: a rerun paints each photo after it, and skips what is done; a
    painting taken out leaves its results alone; a painting changed since its results is refused,
    as a changed setting is (--force redoes everything)."""
    (folder / "broken.png").unlink()
    styles, out = tmp_path / "styles", tmp_path / "out"
    styles.mkdir()
    shutil.copy(EXAMPLES / "ihc.png", styles / "ihc.png")
    assert run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q").exit_code == 0
    before = (out / "coffee_ihc.png").read_bytes()
    shutil.copy(EXAMPLES / "chelsea.png", styles / "cat.png")
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 0, r.output
    assert (json.loads(r.stdout)["done"], json.loads(r.stdout)["skipped"]) == (["chelsea_cat.png", "coffee_cat.png"],
                                                                             ["chelsea_ihc.png", "coffee_ihc.png"])
    assert (out / "coffee_ihc.png").read_bytes() == before
    assert manifest(out)["images"]["coffee_cat.png"]["styles_sha256"] == [batch._sha256(EXAMPLES / "chelsea.png")]
    (styles / "ihc.png").unlink()
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea_cat.png", "coffee_cat.png"], r.output
    assert (out / "coffee_ihc.png").read_bytes() == before and manifest(out)["images"]["coffee_ihc.png"]["state"] == "done"
    shutil.copy(EXAMPLES / "coffee.png", styles / "cat.png")
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q")
    assert (r.exit_code, r.stderr) == (1, f"Error: '{out}' holds a batch made with other settings (changed: styles "
                                          f"({styles / 'cat.png'})); pass --force to redo every image with these\n")
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q", "--json", "--force")
    assert r.exit_code == 0 and json.loads(r.stdout)["done"] == ["chelsea_cat.png", "coffee_cat.png"], r.output
    # the style folder as the output folder: each rerun would take the results for paintings
    r = run("batch", folder, "--style-dir", styles, "-o", styles, *FAST, "-q")
    assert (r.exit_code, r.stderr) == (1, "Error: the output folder must be another folder than --style-dir, or its "
                                          "results would be taken for paintings\n")
    assert sorted(p.name for p in styles.iterdir()) == ["cat.png"]


def test_an_earlier_artems_manifest_holds_each_style_file_to_its_contents(folder, tmp_path, weights_path):
    """Recorded as (path, SHA-256) pairs: two style files whose contents were swapped since are
    other styles, though their set of contents is the same. And a network file that cannot be read
    is one error before the manifest is read or upgraded."""
    (folder / "broken.png").unlink()
    styles, out = tmp_path / "styles", tmp_path / "out"
    styles.mkdir()
    for name, source in (("a.png", "ihc.png"), ("b.png", "chelsea.png")):
        shutil.copy(EXAMPLES / source, styles / name)
    assert run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q").exit_code == 0
    shas = {name: batch._sha256(styles / name) for name in ("a.png", "b.png")}
    data = _as_an_earlier_artem_wrote_it(out, sorted([str(styles / name), sha] for name, sha in shas.items()), False)
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q", "--weights", tmp_path / "none.npz")
    assert r.exit_code == 1 and f"weights file '{tmp_path / 'none.npz'}' does not exist" in r.stderr, r.output
    assert manifest(out) == data  # not upgraded by a run that could not start
    (styles / "a.png").write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    (styles / "b.png").write_bytes((EXAMPLES / "ihc.png").read_bytes())
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q")
    assert r.exit_code == 1 and "(changed: styles)" in r.stderr, r.output


def test_an_input_folder_inside_the_output_folder_gets_no_results_in_it(tmp_path, weights_path):
    """Its files are inputs (all of them lie in the output folder too): a result put there by the
    template would be a photo to paint on the rerun. Refused before any work, by the dry run too;
    results beside it are fine, and a rerun skips them."""
    project = tmp_path / "project"
    (project / "photos").mkdir(parents=True)
    shutil.copy(EXAMPLES / "chelsea.png", project / "photos" / "cat.png")
    for extra in ((), ("--dry-run",)):
        r = run("batch", project / "photos", "--style", STYLE, "-o", project, *FAST, "--template", "photos/{stem}_x.png",
                *extra)
        assert (r.exit_code, r.stderr) == (1, "Error: output template 'photos/{stem}_x.png' puts the result of 'cat.png' "
                                              f"in the input folder, '{project / 'photos'}', where a rerun would take "
                                              "it for an input; name the outputs outside it\n"), r.output
    assert sorted(p.name for p in project.iterdir()) == ["photos"]
    for _ in range(2):
        r = run("batch", project / "photos", "--style", STYLE, "-o", project, *FAST, "-q", "--json")
        assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["skipped"] == ["cat.png"] and (project / "cat.png").is_file()


def test_outputs_never_replace_inputs_and_style_dir_pairs_everything(folder, tmp_path, weights_path):
    (folder / "broken.png").unlink()
    r = run("batch", folder, "--style", STYLE, "-o", folder, *FAST, "-q")
    assert r.exit_code == 1 and "another folder than the input folder, so that no input is replaced" in r.stderr
    styles = tmp_path / "styles"
    styles.mkdir()
    shutil.copy(EXAMPLES / "ihc.png", styles / "ihc.png")
    shutil.copy(EXAMPLES / "chelsea.png", styles / "cat.png")
    out = tmp_path / "out"
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "-q", "--json", "--exclude", "coffee*")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["done"] == ["chelsea_cat.png", "chelsea_ihc.png"]
    for args in ((), ("--style", STYLE, "--style-dir", styles)):  # as a missing argument: the usage
        r = run("batch", folder, *args, "-o", tmp_path / "o2", *FAST, "-q")
        assert r.exit_code == 2 and "--style FILE" in r.stderr, r.output
    for args, message in [(("--style", tmp_path / "none.png"), "style image"),
                          (("--style", STYLE, "--template", "{name}.png"), "template"),
                          (("--style", STYLE, "--template", "{stem.x}.png"), "artem does not fill {stem.x}"),
                          (("--style", STYLE, "--template", "{stem:d}.png"), "template '{stem:d}.png': Unknown format"),
                          (("--style", STYLE, "--template", ""), "cannot tell the output format of ''")]:
        r = run("batch", folder, *args, "-o", tmp_path / "o2", *FAST, "-q")
        assert r.exit_code == 1 and message in r.stderr, r.output
    read_only, access = tmp_path / "ro", os.access  # as a read-only mount refuses (root passes permission bits)
    read_only.mkdir()
    for dry_run in ((), ("--dry-run",)):  # the dry run refuses what the run refuses before any work
        for out, message in ((EXAMPLES / "ihc.png", f"the output folder '{EXAMPLES / 'ihc.png'}' is a file"),
                             (EXAMPLES / "ihc.png" / "o", f"cannot create the output folder '{EXAMPLES / 'ihc.png' / 'o'}' "
                                                          f"('{EXAMPLES / 'ihc.png'}' is a file)"),
                             (read_only, f"the output folder '{read_only}' is not writable"),
                             (read_only / "a" / "b", f"cannot create the output folder '{read_only / 'a' / 'b'}' "
                                                     f"('{read_only}' is not writable)")):
            with mock.patch.object(os, "access", lambda path, mode: not (mode & os.W_OK and str(path) == str(read_only))
                                   and access(path, mode)):
                r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", *dry_run)
            assert (r.exit_code, r.stderr) == (1, f"Error: {message}\n"), r.output
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("inputs,styles,template,message", [
    (["a.png", "a.jpg"], [["s.png"]], "{stem}.png", "gives the results of 'a.png' and 'a.jpg' one name, 'a.png'; add "
     "{ext} (the input's suffix)"),
    (["a.png", "a.pgm"], [["s.png"]], "{stem}_{ext[0]}.png", "gives the results of 'a.png' and 'a.pgm' one name, "
     "'a_p.png'; put the whole {ext} in it"),
    (["a.png", "a.jpg", "a.tif", "b.png", "b.jpg", "c.png", "c.jpg", "d.png", "d.jpg", "e.png", "e.jpg"], [["s.png"]],
     "{stem}.png", "gives the results of 'a.png' and 'a.jpg' one name, 'a.png' (and 4 more names alike: 'b.png', "
     "'c.png', 'd.png', ...); add {ext} (the input's suffix)"),
    (["a.png", "b.png"], [["s.png"]], "out.png", "gives the results of 'a.png' and 'b.png' one name, 'out.png'; add {stem}"),
    (["a.png"], [["s.png"], ["t.png"]], "{stem}.png", "gives two results of 'a.png' one name, 'a.png'; add {style}"),
    (["ab.png", "ac.png"], [["s.png"]], "{stem[0]}.png", "gives the results of 'ab.png' and 'ac.png' one name, 'a.png'; "
     "put the whole {stem} in it"),
    (["a.png"], [["sa.png"], ["sb.png"]], "{stem}_{style:.1}.png", "gives two results of 'a.png' one name, 'a_s.png'; put "
     "the whole {style} in it"),
    (["a.png", "a.jpg"], [["starry.png"]], "{stem}_{style[5]}.png", "gives the results of 'a.png' and 'a.jpg' one name, "
     "'a_y.png'; add {ext} (the input's suffix)"),  # an index past the length of the word "style"
    (["photo1.png"], [["s.png"], ["s.jpg"]], "{stem[4]}_{style}.png", "gives two results of 'photo1.png' one name, "
     "'o_s.png'; rename one of the styles that share a name"),
    (["a.png"], [["s.png"], ["s.jpg"]], "{stem}_{style[0]}.png", "gives two results of 'a.png' one name, 'a_s.png'; "
     "rename one of the styles that share a name"),  # the styles' names alike: no template tells them apart
    (["a.png", "a.jpg"], [["s.png"]], "{stem:.1}.png", "gives the results of 'a.png' and 'a.jpg' one name, 'a.png'; "
     "add {ext} (the input's suffix)"),
    (["a.png"], [["s.png"], ["s.jpg"]], "{stem}_{style}.png", "gives two results of 'a.png' one name, 'a_s.png'; rename "
     "one of the styles that share a name"),
])
def test_a_template_that_gives_two_results_one_name_says_whose_and_what_to_do(inputs, styles, template, message):
    with pytest.raises(ArtemError) as e:
        batch.plan([Path(p) for p in inputs], styles, template)
    assert str(e.value) == f"output template {template!r} {message}"


@pytest.mark.parametrize("field", ["{stem.upper}", "{stem!r}", "{style!a}", "{}", "{0}", "{foo}", "{stem:{style}}",
                                   "{stem[x]}"])
def test_a_template_field_artem_does_not_fill_is_refused(field):
    """Only {stem}, {ext} and {style}, a letter of one or either formatted: {stem.upper} named each result
    after a method's address, another name each run (so a rerun painted everything again)."""
    template = field + ".png"
    with pytest.raises(ArtemError) as e:
        batch.plan([Path("ab.png")], [["s.png"]], template)
    assert str(e.value) == (f"output template {template!r}: artem does not fill {field}; use {{stem}}, {{ext}} (the input's "
                            "suffix) and {style}, a letter of one ({stem[0]}) or its first letters ({stem:.3})")


def test_a_template_is_text_of_the_fields_artem_fills_at_widths_a_name_can_have():
    """Letters, cuts, padding and !s are taken; a width of more than 9999 is refused before it is built
    (gigabytes; 5000 digits: a ValueError of Python's own), and a template that is no text is said to be none."""
    assert [job.output for job in batch.plan([Path("ab.png")], [["sty.png"]], "{stem[1]}_{style:.2}_{stem!s:_>4}.png")] == [
        Path("b_st___ab.png")]
    assert [job.output for job in batch.plan([Path("a.jpg"), Path("d/a.PNG")], [["s.png"]], "{stem}_{ext}.png")] == [
        Path("a_jpg.png"), Path("d/a_PNG.png")]  # the suffix as written, without its dot
    for width in ("99999999999", "9" * 5000):
        with pytest.raises(ArtemError, match=rf"^output template '{{stem:>9999999999[9.png}}']*(\.\.\.)?: a width of "
                                             rf"{len(width)} digits asks for a name longer than any file name$"):
            batch.plan([Path("ab.png")], [["s.png"]], "{stem:>" + width + "}.png")
    with pytest.raises(ArtemError, match=r"^the output template must be text, such as '\{stem\}.png', not PosixPath$"):
        batch.plan([Path("ab.png")], [["s.png"]], Path("{stem}.png"))


def test_a_file_where_a_templates_folder_would_be_is_refused_before_any_work(folder, tmp_path, weights_path):
    """A file where --template's subfolder would be made: refused by a dry run, and by the run before it
    paints (it painted every image, minutes each, to fail each when it made the folder)."""
    out = tmp_path / "out"
    (out / "by").mkdir(parents=True)
    (out / "by" / "ihc").write_text("a file")
    for dry in (["--dry-run"], []):
        r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--template", "by/{style}/{stem}.png", *dry)
        assert (r.exit_code, r.stderr) == (1, f"Error: '{out / 'by' / 'ihc'}' is a file, where the batch would make the "
                                              f"folder of the output '{out / 'by' / 'ihc' / 'broken.png'}'; move it away, "
                                              "or name the outputs otherwise (--template)\n"), r.output
    assert sorted(p.name for p in out.rglob("*")) == ["by", "ihc"]
    (folder / "deeper").mkdir()  # --recursive: an input's own subfolder, which no template moves
    shutil.move(folder / "coffee.png", folder / "deeper" / "coffee.png")
    (out / "deeper").write_text("a file")
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--recursive", "--template", "{stem}_x.png")
    assert (r.exit_code, r.stderr) == (1, f"Error: '{out / 'deeper'}' is a file, where the batch would make the folder of "
                                          f"the output '{out / 'deeper' / 'coffee_x.png'}'; move it away\n"), r.output


def test_recursive_keeps_subfolders_and_skips_the_output_folder_inside(folder, tmp_path, weights_path):
    (folder / "broken.png").unlink()
    (folder / "deeper").mkdir()
    shutil.copy(EXAMPLES / "ihc.png", folder / "deeper" / "stain.png")
    out = folder / "styled"  # inside the input folder: its files are never inputs
    for _ in range(2):
        r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json", "--recursive")
        assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["skipped"] == ["chelsea.png", "coffee.png", "deeper/stain.png"]
    assert (out / "deeper" / "stain.png").is_file()
    # nor are another batch's results (a folder of its manifest) inputs of a batch into another folder; a folder
    # that only bears the manifest's name is no batch's
    (folder / "mine" / "artem-batch.json").mkdir(parents=True)
    shutil.copy(EXAMPLES / "chelsea.png", folder / "mine" / "cat.png")
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "elsewhere", *FAST, "-q", "--json", "--recursive")
    assert json.loads(r.stdout)["done"] == ["chelsea.png", "coffee.png", "deeper/stain.png", "mine/cat.png"], r.output


def test_frames_in_natural_order_start_from_the_previous_result(tmp_path, weights_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for n in (10, 2, 1):
        shutil.copy(EXAMPLES / "chelsea.png", frames / f"frame{n}.png")
    out_prev, out_content = tmp_path / "prev", tmp_path / "content"
    r = run("batch", frames, "--style", STYLE, "-o", out_prev, *FAST, "--init", "previous", "--first-iterations", "6",
            "-q", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["done"] == ["frame1.png", "frame2.png", "frame10.png"]
    images = summary["images"]
    assert [images[k]["iterations"] for k in summary["done"]] == [6, 3, 3]
    r = run("batch", frames, "--style", STYLE, "-o", out_content, *FAST, "-q", "--json")
    from_content = json.loads(r.stdout)["images"]
    # the same content each frame: starting from the previous result starts far closer to the style
    for key in ("frame2.png", "frame10.png"):
        assert images[key]["initial_losses"]["style"] < 0.5 * from_content[key]["initial_losses"]["style"]
        assert images[key]["losses"]["total"] < from_content[key]["losses"]["total"]


def test_a_batch_killed_midway_resumes_where_it_stopped(folder, tmp_path, weights_path):
    (folder / "broken.png").unlink()
    for n in range(3):
        shutil.copy(EXAMPLES / "chelsea.png", folder / f"more{n}.png")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "artem_cli", "batch", str(folder), "--style", STYLE, "-o", str(out), *FAST]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # killed as soon as the second image is reported done
        if line.startswith("coffee.png:"):
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    done_before = [k for k, v in manifest(out)["images"].items() if v["state"] == "done"]
    assert done_before[:2] == ["chelsea.png", "coffee.png"]
    # killed again, in the middle of writing the first image it paints
    killer = [sys.executable, str(REPO / "tests" / "kill_mid_write.py"), "1", "200", *command[3:]]
    assert subprocess.run(killer, capture_output=True).returncode == -signal.SIGKILL
    names = sorted(p.name for p in out.iterdir())
    assert all(n in ("artem-batch.json", "chelsea.png", "coffee.png", "more0.png", "more1.png", "more2.png") for n in names)
    done = subprocess.run([*command, "--json", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert set(summary["skipped"]) >= {"chelsea.png", "coffee.png"}
    assert sorted(summary["skipped"] + summary["done"]) == ["chelsea.png", "coffee.png", "more0.png", "more1.png", "more2.png"]
    for name in summary["skipped"] + summary["done"]:
        with Image.open(out / name) as img:
            img.load()


def test_a_dask_cluster_that_loses_a_worker_midway_writes_every_output_once(folder, tmp_path, weights_path):
    """Two worker processes on loopback; as the first result arrives, a worker that is painting is
    SIGKILLed. Its task runs again elsewhere: every image is done exactly once, and each output is
    the very file a run in this process writes."""
    import os

    from distributed import Client, LocalCluster

    from artem_cli.api import Settings

    (folder / "broken.png").unlink()
    for n in range(4):
        shutil.copy(EXAMPLES / "chelsea.png", folder / f"more{n}.png")
    settings = Settings(size=40, iterations=25, style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0)),
                        content_layers=(("relu2_2", 1.0),))
    out, local = tmp_path / "out", tmp_path / "local"
    killed, written = [], []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:

        def kill_a_busy_worker(job, entry):
            written.append(job.key)
            if not killed:
                busy = [address for address, tasks in client.processing().items() if tasks]
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(busy[0])

        summary = batch.run(folder, out, [(STYLE,)], settings, weights_path=weights_path, client=client,
                            on_done=kill_a_busy_worker)
    assert killed and summary.failed == {}
    names = ["chelsea.png", "coffee.png", "more0.png", "more1.png", "more2.png", "more3.png"]
    assert sorted(written) == sorted(summary.done) == names  # each once
    assert sorted(k for k, v in manifest(out)["images"].items() if v["state"] == "done") == names
    batch.run(folder, local, [(STYLE,)], settings, weights_path=weights_path)
    for name in names:
        assert (out / name).read_bytes() == (local / name).read_bytes()


@pytest.mark.parametrize("name", ["SIGINT", "SIGHUP"])  # SIGHUP: the terminal closed (it killed Python's resource tracker)
def test_ctrl_c_at_the_terminal_stops_a_batch_on_local_workers_in_one_line(folder, tmp_path, weights_path, name):
    """A terminal's Ctrl-C is a SIGINT to the whole process group, the local cluster's workers with
    the batch: they leave it to the batch, which stops them and says so in one line (exit 130), as
    alone; no worker prints a traceback. Once both workers paint (each has run a second of CPU
    time: past its start, its own handlers in place were it to take SIGINT), the workers get it
    first, until each has painted a second more (one that takes it prints its traceback within
    milliseconds), then the whole group. With Dask's usual port taken, as by another batch's cluster:
    nothing said of it either."""
    import socket

    taken = socket.socket()
    with contextlib.suppress(OSError):  # taken already, by something else: as well
        taken.bind(("127.0.0.1", 8787))
        taken.listen()
    for n in range(2):
        shutil.copy(EXAMPLES / "coffee.png", folder / f"more{n}.png")
    command = [sys.executable, "-m", "artem_cli", "batch", str(folder), "--style", STYLE, "-o", str(tmp_path / "out"),
               *FAST[:2], "--iterations", "1000000", "--optimizer", "adam", "-q", "--workers", "2", "--json"]
    number = signal.Signals[name]
    batch_run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))  # as a session gives it
    deadline = time.monotonic() + 600  # a batch stuck fails the test, not the suite
    try:
        while len(workers := spawned_children(batch_run.pid)) < 2 or min(workers.values()) < 1.0:
            assert batch_run.poll() is None, batch_run.stderr.read()
            assert time.monotonic() < deadline, "the workers did not paint"
            time.sleep(0.2)
        for pid in workers:
            os.kill(pid, number)
        while any(pid in (now := spawned_children(batch_run.pid)) and now[pid] < seconds + 1.0 for pid, seconds in workers.items()):
            assert time.monotonic() < deadline, f"the workers stopped painting after their {name}"
            time.sleep(0.1)
        os.killpg(batch_run.pid, number)
        stdout, stderr = batch_run.communicate(timeout=120)
    finally:
        if batch_run.poll() is None:
            os.killpg(batch_run.pid, signal.SIGKILL)
    taken.close()
    summary = json.loads(stdout)  # what it did (the broken file, failed as it was read), as a batch alone says it
    assert (summary["done"], list(summary["failed"]), summary["interrupted"]) == ([], ["broken.png"], True)
    assert (batch_run.returncode, stderr) == (128 + number, f"Interrupted ({name}): 0 images done in this run; the manifest keeps "
                                                   "every finished image; run again to go on\n"
                                                   f"  failed: broken.png: {summary['failed']['broken.png']}\n")
    for _ in range(300):  # the workers end with the batch (they may take a moment to be reaped)
        alive = [p for p in workers if Path(f"/proc/{p}").exists() and " Z " not in Path(f"/proc/{p}/stat").read_text()]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive


def test_an_output_never_replaces_a_style_image_nor_needs_to_be_a_file_and_a_folder(folder, tmp_path, weights_path):
    """A style image kept in the output folder, under an output's name: refused before any work, with
    --overwrite and --force too. An output that another's would need as its folder (a.tif's a.png,
    and a.png/b.png with --recursive): refused before any work, whichever comes first."""
    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(EXAMPLES / "ihc.png", out / "coffee.png")
    before = (out / "coffee.png").read_bytes()
    for extra in ((), ("--overwrite",), ("--overwrite", "--force")):
        r = run("batch", folder, "--style", out / "coffee.png", "-o", out, *FAST, "-q", *extra)
        assert (r.exit_code, r.stderr) == (1, f"Error: the output '{out / 'coffee.png'}' would replace the style image "
                                              f"'{out / 'coffee.png'}'\n"), r.output
    assert (out / "coffee.png").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["coffee.png"]
    nested = tmp_path / "nested"
    (nested / "a.png").mkdir(parents=True)
    shutil.copy(EXAMPLES / "coffee.png", nested / "a.png" / "b.png")
    shutil.copy(EXAMPLES / "coffee.png", nested / "a.tif")
    r = run("batch", nested, "--style", STYLE, "-o", tmp_path / "out2", *FAST, "-q", "--recursive")
    assert (r.exit_code, r.stderr) == (1, "Error: 'a.png' would be an output (of 'a.tif') and the folder of the output "
                                          "'a.png/b.png'; rename one, or leave one out with --exclude\n")
    assert not (tmp_path / "out2").exists()


def test_a_subfolder_that_cannot_be_listed_is_an_error_not_left_out(folder, tmp_path, weights_path):
    """--recursive: os.walk leaves out, unsaid, a folder it cannot list (as for another user's)."""
    (folder / "broken.png").unlink()
    (folder / "locked").mkdir()
    shutil.copy(EXAMPLES / "coffee.png", folder / "locked" / "c.png")
    scandir = os.scandir

    def refusing(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    with mock.patch.object(os, "scandir", refusing):
        r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "out", *FAST, "-q", "--recursive")
    assert (r.exit_code, r.stderr) == (1, f"Error: cannot list the folder '{folder / 'locked'}' (Permission denied)\n")
    assert not (tmp_path / "out").exists()


def test_an_unreadable_manifest_is_not_called_damaged(folder, tmp_path, weights_path):
    """A manifest that cannot be read is not one to start anew from (--force would lose its record)."""
    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q").exit_code == 0
    text = (out / batch.MANIFEST).read_text()
    read_bytes = Path.read_bytes

    def refused(path):  # as for another user (root reads anything)
        if path.name == batch.MANIFEST:
            raise OSError(13, "Permission denied")
        return read_bytes(path)

    with mock.patch.object(Path, "read_bytes", refused):
        for extra in ((), ("--force",)):
            r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", *extra)
            assert (r.exit_code, r.stderr) == (1, f"Error: cannot read the manifest '{out / batch.MANIFEST}' "
                                                  "(Permission denied)\n"), r.output
    assert (out / batch.MANIFEST).read_text() == text


def test_the_workers_of_a_local_cluster_log_nothing_to_the_terminal():
    """What Dask logs in a local cluster's worker, at any level, stays there: a heartbeat lost as a
    batch stops logs an error with its traceback, which reached the terminal after the one line.
    A task logs an error and a critical message with a traceback on a worker's own loggers."""
    script = """if True:
        import logging
        from artem_cli import batch

        def complain():
            try:
                raise OSError("Stream is closed")
            except OSError:
                logging.getLogger("distributed.worker").exception("Failed to communicate with scheduler")
                logging.getLogger("distributed.nanny").critical("a worker's last word")
            return "painted"

        with batch.dask_client(workers=1) as client:
            print(client.submit(complain).result())
    """
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "painted\n", "")


def test_a_second_batch_into_the_same_folder_is_refused_while_the_first_runs(folder, tmp_path, weights_path):
    """Two batches at once in one output folder would each rewrite the manifest with their own record
    (the last one's standing) and paint over the other's outputs: the second is refused, and the
    folder is free again once the first has ended, however it ended (the lock goes with its process)."""
    import fcntl

    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    holder = os.open(out, os.O_RDONLY)  # as a batch running in another process holds it
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--force", "--overwrite")
        assert (r.exit_code, r.stderr) == (1, f"Error: another batch is painting into '{out}' now: wait for it to end, "
                                              "or give another output folder\n")
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    finally:
        os.close(holder)
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea.png", "coffee.png"], r.output
    unsupported = OSError(95, "Operation not supported")  # a file system without locks: the batch runs unguarded
    with mock.patch.object(fcntl, "flock", side_effect=unsupported):
        r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == ["chelsea.png", "coffee.png"], r.output


def test_a_signal_stops_a_batch_on_a_cluster_and_its_summary_says_what_was_done(folder, tmp_path, weights_path):
    """On a cluster, as in one process: a signal while the batch waits stops it there, one while a
    result is written (when the handler only records it: ``now`` is False) stops it after that
    result, one while the images are read before any is sent; either way the summary has what was
    done and what failed (it was lost: the Ctrl-C escaped the batch). One after the last result
    interrupts nothing: every image is done."""
    from artem_cli.api import Interruptible, Settings

    settings = Settings(size=40, iterations=3, style_layers=(("relu1_1", 1.0),), content_layers=(("relu2_2", 1.0),))
    with batch.dask_client(workers=1) as client:
        def signal_while_written(job, entry):
            if entry["state"] == "done":  # (a failure to read comes first, before any task)
                assert not interruptible.now  # a signal now is only recorded
                interruptible.requested = True

        interruptible = Interruptible()
        summary = batch.run(folder, tmp_path / "a", [(STYLE,)], settings, weights_path=weights_path, client=client,
                            on_done=signal_while_written, interruptible=interruptible)
        assert summary.interrupted and list(summary.failed) == ["broken.png"] and len(summary.done) == 1
        manifest = json.loads((tmp_path / "a" / batch.MANIFEST).read_text())
        assert [k for k, e in manifest["images"].items() if e["state"] == "done"] == summary.done

        def signal_while_waiting(futures):  # as distributed.as_completed waits for the first result
            assert interruptible.now  # a signal now raises KeyboardInterrupt
            raise KeyboardInterrupt
            yield

        interruptible = Interruptible()
        with mock.patch("distributed.as_completed", signal_while_waiting):
            summary = batch.run(folder, tmp_path / "b", [(STYLE,)], settings, weights_path=weights_path, client=client,
                                interruptible=interruptible)
        assert summary.interrupted and list(summary.failed) == ["broken.png"] and summary.done == []
        assert not list((tmp_path / "b").glob("*.png"))

        read = batch._Batch.read

        def signal_while_reading(self, job, settings):  # before any image is sent: none is painted
            interruptible.requested = True
            return read(self, job, settings)

        interruptible = Interruptible()
        with mock.patch.object(batch._Batch, "read", signal_while_reading):
            summary = batch.run(folder, tmp_path / "c", [(STYLE,)], settings, weights_path=weights_path, client=client,
                                interruptible=interruptible)
        assert summary.interrupted and summary.done == [] and not list((tmp_path / "c").glob("*.png"))

        def signal_after_the_last(job, entry):  # every image is done: the batch is not interrupted
            if entry["state"] == "done" and len(list((tmp_path / "d").glob("*.png"))) == 2:
                interruptible.requested = True

        interruptible = Interruptible()
        summary = batch.run(folder, tmp_path / "d", [(STYLE,)], settings, weights_path=weights_path, client=client,
                            on_done=signal_after_the_last, interruptible=interruptible)
        assert not summary.interrupted and len(summary.done) == 2 and interruptible.requested


def test_a_worker_serving_two_batches_paints_a_changed_style_file_as_it_is_now(folder, tmp_path, weights_path):
    """A worker keeps its Stylizer and style targets for its next tasks, and a cluster (--scheduler)
    serves batch after batch: a style file changed under the same name was painted with the targets
    of its old contents. The second batch's image must be what a worker that never saw the old file
    paints."""
    from artem_cli.api import Settings

    settings = Settings(size=40, iterations=3, style_layers=(("relu1_1", 1.0),), content_layers=(("relu2_2", 1.0),))
    style, fresh = tmp_path / "style.png", tmp_path / "fresh.png"
    shutil.copy(STYLE, style)
    (folder / "broken.png").unlink()
    with batch.dask_client(workers=1) as client:
        batch.run(folder, tmp_path / "a", [(style,)], settings, weights_path=weights_path, client=client, include=["chelsea*"])
        shutil.copy(EXAMPLES / "coffee.png", style)  # the same name, other pixels
        shutil.copy(EXAMPLES / "coffee.png", fresh)
        for out, styles in (("b", style), ("c", fresh)):
            batch.run(folder, tmp_path / out, [(styles,)], settings, weights_path=weights_path, client=client,
                      include=["chelsea*"])
    a, b, c = (np.asarray(Image.open(tmp_path / out / "chelsea.png")) for out in "abc")
    assert np.array_equal(b, c) and not np.array_equal(a, b)


def test_local_workers_that_would_not_fit_in_memory_together_are_refused(folder, tmp_path, weights_path, monkeypatch):
    """Each worker checks its own image against the memory free as it starts, so two starting at
    once would both go ahead: the batch checks, before any is painted, that the largest images, one
    a worker, fit at once. With one worker, or a cluster elsewhere, it paints."""
    from distributed import Client, LocalCluster

    from artem_cli.api import Settings, estimate_memory

    settings = Settings(size=40, iterations=3, style_layers=(("relu1_1", 1.0),), content_layers=(("relu2_2", 1.0),))
    need = estimate_memory((40, 40), settings)  # chelsea and coffee are 40x26 and 40x27: a little less
    monkeypatch.setattr(batch, "host_memory", lambda shared: ("free", int(1.5 * need)))
    for workers, refused in ((2, True), (1, False)):
        out = tmp_path / f"out{workers}"
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as cluster:
            with Client(cluster) as client:
                if refused:
                    with pytest.raises(ArtemError, match=r"^2 workers painting at once need about 0\.\d GiB of memory but "
                                                         r"0\.\d GiB are free here; use fewer --workers"):
                        batch.run(folder, out, [(STYLE,)], settings, weights_path=weights_path, client=client)
                    assert not list(out.glob("*.png"))
                    with Client(cluster.scheduler_address) as elsewhere:  # not this process's cluster: not checked
                        summary = batch.run(folder, out, [(STYLE,)], settings, weights_path=weights_path, client=elsewhere)
                else:
                    summary = batch.run(folder, out, [(STYLE,)], settings, weights_path=weights_path, client=client)
        assert sorted(summary.done) == ["chelsea.png", "coffee.png"] and list(summary.failed) == ["broken.png"]


def test_a_dry_run_with_local_workers_checks_their_memory_at_once_as_the_run_does(folder, tmp_path, weights_path,
                                                                                 monkeypatch):
    """The dry run said 2 workers' images fit where the batch then refused them at once; it checks
    as the batch does, and says how much its workers take at once."""
    from artem_cli.api import Settings, estimate_memory

    (folder / "broken.png").unlink()
    settings = Settings(size=40, style_layers=(("relu1_1", 1.0),), content_layers=(("relu2_2", 1.0),))
    need = estimate_memory((40, 40), settings)  # chelsea and coffee are 40x26 and 40x27: a little less
    monkeypatch.setattr(batch, "host_memory", lambda shared: ("free", int(1.5 * need)))
    options = ["--size", "40", "--style-layers", "relu1_1", "--content-layers", "relu2_2", "--dry-run"]
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "out", *options, "--workers", "2")
    assert r.exit_code == 1 and r.stderr.startswith("Error: 2 workers painting at once need about 0."), r.output
    def gib(r):  # each image's, and all at once
        lines = r.stdout.splitlines()
        return ([float(line.split("about ")[1].split(" GiB")[0]) for line in lines if "GiB of memory" in line],
                float(lines[-1].split("at most ")[1].split(" GiB")[0]))

    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "out", *options, "--workers", "1")
    one, at_once = gib(r)
    assert r.exit_code == 0 and len(one) == 2 and at_once == max(one), r.output
    monkeypatch.setattr(batch, "host_memory", lambda shared: ("free", 4 * need))
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "out", *options, "--workers", "2")
    each, at_once = gib(r)  # of this run: another's process holds a little more or less (0.87 here, 0.88 there)
    assert r.exit_code == 0 and len(each) == 2 and abs(at_once - sum(each)) <= 0.011, r.output
    assert not (tmp_path / "out").exists()


def test_dry_runs_predict_memory_and_time_and_write_nothing(folder, tmp_path, weights_path):
    out = tmp_path / "out"
    r = run("batch", folder, "--style", STYLE, "-o", out, "--size", "64", "--dry-run", "--json")
    # the unreadable file is named, the rest predicted, and one error line ends it
    lines = r.stderr.splitlines()
    assert r.exit_code == 1 and lines[0].startswith(f"would fail: {folder / 'broken.png'}: content image ")
    assert lines[1:] == ["Error: 1 of the 3 images cannot be painted; the batch would mark it failed"]
    report = json.loads(r.stdout)
    assert sorted(report["images"]) == [str(folder / "chelsea.png"), str(folder / "coffee.png")]
    for p in report["images"].values():
        assert p["memory_bytes"] > 3e8 and p["seconds_per_iteration"] > 0 and p["shape"][1] == 64
    assert not out.exists()
    # with a large --style-scale the style image's pass needs the most (ihc at 256 x 4 = 1024 px)
    r = run("batch", folder, "--style", STYLE, "-o", out, "--size", "256", "--style-scale", "4", "--dry-run", "--json",
            "--exclude", "broken.png")
    from artem_cli import api
    style_pass = api.estimate_memory(None, api.Settings(size=256, style_scale=4), [(1024, 1024)]) - api.WEIGHTS_MEMORY
    assert [p["memory_bytes"] > style_pass > 2**30 for p in json.loads(r.stdout)["images"].values()] == [True, True]
    r = run("stylize", folder / "coffee.png", STYLE, "-o", tmp_path / "x.png", "--dry-run")
    assert r.exit_code == 0 and "GiB of memory" in r.output and "s per iteration on average" in r.output
    r = run("stylize", folder / "broken.png", STYLE, "-o", tmp_path / "x.png", "--dry-run")
    assert r.exit_code == 1 and r.stderr.startswith(f"Error: content image '{folder / 'broken.png'}'")
    assert len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_a_dry_run_refuses_what_the_run_would_refuse_and_names_the_images_it_would_fail(folder, tmp_path, weights_path):
    """The checks a run makes before any work, made by --dry-run too: the styles (a batch's from
    --style or --style-dir), the settings against them, each content image (a batch would mark one
    too thin for the deepest layer failed, as it marks one it cannot read)."""
    thin = tmp_path / "thin.png"
    Image.new("RGB", (300, 2)).save(thin)  # 40x1 px at --size 40: relu3_1, the deepest style layer, needs 4
    out = tmp_path / "out"
    for args in ([], ["--style", STYLE, "--style-dir", EXAMPLES]):  # as a missing argument: a usage error
        r = run("batch", folder, "-o", out, *FAST, *args)
        assert r.exit_code == 2 and r.stderr.startswith("Usage: ") and r.stderr.endswith(
            "Error: give the style as --style FILE (repeatable, blended) or as --style-dir FOLDER"
            + ", not both" * bool(args) + "\n"), r.output
    for args, error in [
            (["--style", thin], "the style image at 40x1 px is too small for relu3_1"),
            (["--style", tmp_path / "gone.png"], f"style image '{tmp_path / 'gone.png'}' does not exist"),
            (["--style", STYLE, "--style-blend", "1,1"], "style-blend has 2 weights for 1 style images")]:
        r = run("batch", folder, "-o", out, *FAST, "--dry-run", *args)
        assert r.exit_code == 1 and r.stderr.startswith(f"Error: {error}") and len(r.stderr.splitlines()) == 1, r.output
        r = run("stylize", folder / "chelsea.png", *(args[1:2] or [STYLE]), "-o", tmp_path / "x.png", *FAST, "--dry-run",
                *args[2:])
        if args:
            assert r.exit_code == 1 and r.stderr.startswith(f"Error: {error}") and len(r.stderr.splitlines()) == 1
    styles = tmp_path / "styles"
    styles.mkdir()
    shutil.copy(STYLE, styles / "ihc.png")
    for args, error in [  # the batch's own options, checked as the run checks them
            (["--style", STYLE, "-o", out, "--first-iterations", "2"], "--first-iterations goes with --init previous"),
            (["--style", STYLE, "-o", out, "--init", STYLE], f"--init {STYLE}: a file starts one image (artem stylize)"),
            (["--style", STYLE, "-o", folder], "the output folder must be another folder than the input folder"),
            (["--style", STYLE, "-o", out, "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "give --scheduler"),
            (["--style-dir", EXAMPLES, "-o", out, "--init", "previous"], "--init previous follows one sequence of frames"),
            (["--style", STYLE, "-o", out, "--init", "previous", "--workers", "1"], "--init previous paints the frames in order"),
            (["--style", STYLE, "-o", out, "--workers", "100000"], f"--workers 100000: this machine gives artem {THREADS} CPU "
                                                                   f"core{'s' * (THREADS != 1)}, and local workers only share "
                                                                   f"them; use at most {THREADS}"),
            # the outputs' names (not the files there: a dry run does not look at the outputs)
            (["--style", STYLE, "-o", out, "--template", "{foo}.png"], "output template '{foo}.png'"),
            (["--style", STYLE, "-o", out, "--template", "{stem}.xyz"], "cannot tell the output format of 'broken.xyz'"),
            (["--style", STYLE, "-o", out, "--template", "x.png"], "output template 'x.png' gives the results of"),
            (["--style", STYLE, "-o", out, "--template", "{stem:x>300}.png"], "output template '{stem:x>300}.png' gives "
             "'xxx"),  # a name longer than the file system takes
            (["--style", STYLE, "-o", EXAMPLES, "--template", "{style}.png", "--include", "coffee.png"],
             f"the output '{EXAMPLES / 'ihc.png'}' would replace the style image")]:
        r = run("batch", folder, *args, *FAST, "--dry-run")
        assert r.exit_code == 1 and r.stderr.startswith(f"Error: {error}") and len(r.stderr.splitlines()) == 1, r.output
    r = run("batch", folder, "--style", STYLE, "-o", out, "--init", STYLE, *FAST)  # the run: failed every image before
    assert r.exit_code == 1 and r.stderr.startswith("Error: --init ") and len(r.stderr.splitlines()) == 1, r.output
    assert not out.exists()
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "--dry-run")  # 2 images, 1 unreadable
    assert r.exit_code == 1 and f"{folder / 'coffee.png'}: 40x27, fp32 on cpu" in r.stdout
    assert "all 2 images: about" in r.stdout, r.stdout
    shutil.copy(STYLE, styles / "ihc2.png")
    r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, "--dry-run", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["style_sets"] == 2
    assert "all 2 images after each of 2 styles: about" in run("batch", folder, "--style-dir", styles, "-o", out, *FAST,
                                                               "--dry-run").stdout
    shutil.copy(thin, styles / "thin.png")  # one style too thin: the dry run and the run refuse the batch at once
    for dry in (["--dry-run"], []):
        r = run("batch", folder, "--style-dir", styles, "-o", out, *FAST, *dry)
        assert r.exit_code == 1 and r.stderr.startswith("Error: the style image at 40x1 px is too small for relu3_1")
        assert len(r.stderr.splitlines()) == 1 and not out.exists()
    shutil.copy(thin, folder / "thin.png")
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--dry-run", "--json")
    assert r.exit_code == 1 and r.stderr.splitlines()[-1] == ("Error: 2 of the 4 images cannot be painted; the batch would "
                                                              "mark them failed")
    assert f"would fail: {folder / 'thin.png'}: the content image at 40x1 px is too small for relu3_2" in r.stderr
    failing = json.loads(r.stdout)["failing"]
    assert not out.exists()
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")  # the run fails the same images
    assert r.exit_code == 1 and sorted(json.loads(r.stdout)["failed"]) == sorted(Path(p).name for p in failing)
    r = run("stylize", folder / "thin.png", STYLE, "-o", tmp_path / "x.png", *FAST, "--dry-run")
    assert r.exit_code == 1 and r.stderr.startswith("Error: the content image at 40x1 px is too small for relu3_2")
    assert not (tmp_path / "x.png").exists()
    alone = tmp_path / "alone"  # a batch of one image lists it as one it would fail, as a batch does
    alone.mkdir()
    shutil.copy(thin, alone / "thin.png")
    r = run("batch", alone, "--style", STYLE, "-o", out, *FAST, "--dry-run")
    lines = r.stderr.splitlines()
    assert r.exit_code == 1 and len(lines) == 2 and lines[0].startswith(f"would fail: {alone / 'thin.png'}: the content ")
    assert lines[1] == "Error: the one image cannot be painted; the batch would mark it failed"
    r = run("batch", tmp_path / "styles", "-o", out, *FAST, "--dry-run", "--style", STYLE, "--include", "*.jpg")
    assert r.exit_code == 1 and r.stderr == f"Error: no image files in '{tmp_path / 'styles'}' that match --include/--exclude\n"


def test_a_prediction_follows_the_probes_never_below_the_smallest_nor_falling_beyond_the_largest():
    """Each time is a broken line through the probes' timings: straight between two (a 32x21 frame
    costs about the 32 px probe's pass, not the 64 px one's: 2.4x too much before), the smallest's time
    below it (a line through noisy timings may cross zero there: seen at 32 px, -1.4 s an iteration),
    beyond the largest the line through the last two, never falling (noise again)."""
    from artem_cli import api, bench

    predictor = object.__new__(bench.Predictor)
    predictor.settings, predictor.xp, predictor.baseline = api.Settings(iterations=100), np, 0
    predictor.add = predictor.recursion = [(0, 0.0)]
    extra = bench.Predictor.FIRST_LINE_SEARCH + 1  # and one in 100 iterations
    per = lambda shape: predictor.predict(shape)["seconds"] / (100 + extra)  # an evaluation's

    predictor.evaluation = [(32 * 32, 0.05), (64 * 64, 0.04), (160 * 160, 0.30)]  # the 64 px one faster, by chance
    assert per((32, 32)) == pytest.approx(0.05) and per((21, 32)) == pytest.approx(0.05)
    assert per((8, 8)) == pytest.approx(0.05)  # not less than the smallest probe's
    assert per((48, 48)) == pytest.approx(0.05 - 0.01 * (48 * 48 - 1024) / (4096 - 1024))
    assert per((160, 160)) == pytest.approx(0.30)
    assert per((320, 320)) == pytest.approx(0.30 + 0.26 * (320**2 - 160**2) / (160**2 - 64**2))  # the last two's slope
    predictor.evaluation = [(32 * 32, 0.05), (64 * 64, 0.30), (160 * 160, 0.20)]  # the last one faster, by chance
    assert per((640, 640)) == pytest.approx(0.20)


def test_frames_first_iterations_are_predicted_for_the_first_frame(folder, tmp_path, weights_path, monkeypatch):
    """--init previous --first-iterations N: the first frame runs N iterations, the others --iterations;
    the prediction's time counts each so, its L-BFGS recursion over the pairs each run keeps (the
    pair's adding, timed apart, once an iteration however many are kept)."""
    from artem_cli import api, bench

    predictor = object.__new__(bench.Predictor)
    predictor.settings, predictor.xp, predictor.baseline = api.Settings(iterations=10, history=20), np, 0
    line = lambda slope: [(0, 0.0), (100, 100 * slope)]  # through 0: an image of 100x100 px costs 10^4 slopes
    predictor.evaluation, predictor.recursion = line(1e-4), line(1e-5)
    predictor.add = line(5e-6)  # half the probe's iteration: the pair added, then the recursion over 10 pairs
    ten, forty = predictor.predict((100, 100)), predictor.predict((100, 100), 40)
    search = bench.Predictor.FIRST_LINE_SEARCH  # and one more in 100 iterations
    assert (ten["iterations"], forty["iterations"]) == (10, 40)
    assert ten["seconds"] == pytest.approx((10 + search + 0.1) * 1.0 + 10 * 0.1)
    assert forty["seconds"] == pytest.approx((40 + search + 0.4) * 1.0 + 40 * (0.05 + 0.05 * 2))  # 20 pairs kept
    (folder / "broken.png").unlink()
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "out", *FAST, "--init", "previous",
            "--first-iterations", "7", "--dry-run", "--json")
    report = json.loads(r.stdout)
    first, then = (report["images"][str(folder / name)] for name in ("chelsea.png", "coffee.png"))
    assert (first["iterations"], then["iterations"]) == (7, 3), r.output
    # a frame after one that fails starts from its content too, as the run starts it
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("a.png", "c.png", "d.png"):
        shutil.copy(EXAMPLES / "chelsea.png", frames / name)
    (frames / "b.png").write_bytes(b"no image")
    args = ["batch", frames, "--style", STYLE, "-o", tmp_path / "out", *FAST, "--init", "previous", "--first-iterations",
            "500", "--history", "500", "--dry-run", "--json"]
    report = json.loads(run(*args).stdout)
    assert [report["images"][str(frames / n)]["iterations"] for n in ("a.png", "c.png", "d.png")] == [500, 500, 3]
    # and its memory checked with those iterations (L-BFGS keeps as many pairs): between the two, each fails (a
    # frame after a failing one starts from its content)
    shape = report["images"][str(frames / "a.png")]["shape"]
    settings = api.Settings(size=40, iterations=3, history=500, style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0),
                            ("relu3_1", 1.0)), content_layers=(("relu3_2", 1.0),))
    few, many = (api.estimate_memory(shape, dataclasses.replace(settings, iterations=n)) for n in (3, 500))
    assert many > few
    monkeypatch.setattr(api, "host_memory", lambda shared=False: ("free", (few + many) // 2))
    failing = json.loads(run(*args).stdout)["failing"]
    assert [failing[str(frames / n)].startswith("a 40x27 run needs about") for n in ("a.png", "c.png", "d.png")] == [True] * 3
    args[args.index("--first-iterations") + 1] = "3"  # as many as the others: each fits
    assert json.loads(run(*args).stdout)["failing"] == {str(frames / "b.png"): failing[str(frames / "b.png")]}


def test_a_signal_while_the_batch_waits_for_its_scheduler_stops_it_at_once(folder, tmp_path, monkeypatch, weights_path):
    """A SIGTERM while the batch connects to --scheduler was recorded and waited out with the connection
    (20 s), which then failed: exit 1, the signal's status and line lost."""
    import distributed

    def unreachable(address, timeout=None):  # as Dask waits for a scheduler that does not answer
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise OSError(f"Timed out trying to connect to {address} after {timeout}")

    monkeypatch.setattr(distributed, "Client", unreachable)
    r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "out", *FAST, "--scheduler", "tcp://127.0.0.1:1")
    assert (r.exit_code, r.stderr) == (143, "Interrupted (SIGTERM) before the first image; nothing was "
                                            "painted\n"), r.output
    assert not (tmp_path / "out").exists()


def test_progress_on_a_terminal_counts_every_image_and_each_frames_own_iterations(tmp_path, weights_path):
    """On a terminal: each frame's bar counts the iterations it runs (a first frame's --first-iterations,
    as a frame's after a failed one), and the images' bar reaches the last image, on a rerun too."""
    frames, out = tmp_path / "frames", tmp_path / "out"
    frames.mkdir()
    for name in ("a.png", "c.png", "d.png"):
        shutil.copy(EXAMPLES / "chelsea.png", frames / name)
    (frames / "b.png").write_bytes(b"no image")
    args = ["batch", frames, "--style", STYLE, "-o", out, "--size", "32", "--iterations", "2", "--init", "previous",
            "--first-iterations", "5"]
    status, shown, _ = on_a_terminal(*args)
    assert status == 1, shown  # b.png failed
    # each frame's bar as it opens (its later states are drawn at most every 0.1 s, its last one erased)
    assert (len(re.findall(r"\b0/5 \[", shown)), len(re.findall(r"\b0/2 \[", shown))) == (2, 1), shown
    assert re.search(r"\b4/4 \[[^]]*image", shown), shown  # the images' bar, b.png's failure counted
    long = "e" * 60 + ".png"  # named by its end on the bar, which stays on the terminal's line
    shutil.copy(EXAMPLES / "chelsea.png", frames / long)
    status, shown, _ = on_a_terminal(*args)
    assert status == 1 and f"{long}: 2 iterations" in shown, shown
    assert re.search(r"\b5/5 \[[^]]*image", shown) and f"…{long[-31:]}: " in shown, shown


def test_outputs_stay_in_the_output_folder_and_replace_only_what_a_batch_made(folder, tmp_path, weights_path):
    (folder / "broken.png").unlink()
    before = (folder / "chelsea.png").read_bytes()
    out = folder / "out"
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--template", "../{stem}.png")
    assert (r.exit_code, r.stderr) == (1, "Error: output template '../{stem}.png' gives '../chelsea.png', which goes up a "
                                          "folder ('..'); name the outputs inside the output folder, without '..'\n")
    for template, way in (("/tmp/{stem}.png", "is an absolute path; name the outputs inside the output folder, a relative "
                                              "name"),
                          ("a/../{stem}.png", "goes up a folder ('..'); name the outputs inside the output folder, without "
                                              "'..'")):
        with pytest.raises(ArtemError, match=f"^output template '{re.escape(template)}' gives .*, which {re.escape(way)}$"):
            batch.plan([Path("c.png")], [[STYLE]], template)
    assert (folder / "chelsea.png").read_bytes() == before and not out.exists()
    out = tmp_path / "out"
    out.mkdir()
    (out / "coffee.png").write_bytes(b"a file of the user's")
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q")
    assert r.exit_code == 1 and "coffee.png' exists and no batch made it; pass --overwrite" in r.stderr
    assert (out / "coffee.png").read_bytes() == b"a file of the user's" and not (out / "chelsea.png").exists()
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--overwrite").exit_code == 0
    assert Image.open(out / "coffee.png").size[0] == 40
    # its own outputs a batch repaints without --overwrite (here with other settings, --force)
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--tv-weight", "3", "-q", "--force", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["done"] == ["chelsea.png", "coffee.png"]
    # a folder where a result would go: said so before any work, with --overwrite too (which cannot replace it)
    (tmp_path / "other" / "chelsea.png").mkdir(parents=True)
    for overwrite in ([], ["--overwrite"]):
        r = run("batch", folder, "--style", STYLE, "-o", tmp_path / "other", *FAST, "-q", *overwrite)
        assert (r.exit_code, r.stderr) == (1, f"Error: '{tmp_path / 'other' / 'chelsea.png'}' is a folder, where the batch "
                                              "would write the result of 'chelsea.png'; move it away, or name the outputs "
                                              "otherwise (--template)\n"), r.output
        assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["chelsea.png"]


def test_a_changed_content_file_is_painted_again_and_hidden_files_are_no_inputs(folder, tmp_path, weights_path):
    (folder / "broken.png").unlink()
    (folder / "._chelsea.png").write_bytes(b"macOS metadata, not an image")
    (folder / ".thumbnails").mkdir()
    shutil.copy(EXAMPLES / "chelsea.png", folder / ".thumbnails" / "small.png")
    out = tmp_path / "out"
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json", "--recursive")
    assert r.exit_code == 0 and json.loads(r.stdout)["done"] == ["chelsea.png", "coffee.png"]
    shutil.copy(EXAMPLES / "ihc.png", folder / "coffee.png")  # another picture under the same name
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json", "--recursive")
    assert json.loads(r.stdout)["done"] == ["coffee.png"] and json.loads(r.stdout)["skipped"] == ["chelsea.png"]


def test_a_batch_replaces_its_own_outputs_after_a_failure_a_partial_force_or_a_damaged_manifest(folder, tmp_path,
                                                                                                 weights_path):
    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q").exit_code == 0
    good = (folder / "coffee.png").read_bytes()
    (folder / "coffee.png").write_text("broken now")  # its entry turns 'failed'; its output stays
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q").exit_code == 1
    (folder / "coffee.png").write_bytes(good)
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["done"] == ["coffee.png"], r.output
    # other settings for one image only, then the rest: both outputs were this folder's batches'
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--tv-weight", "3", "-q", "--force",
               "--include", "chelsea.png").exit_code == 0
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "--tv-weight", "3", "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["done"] == ["coffee.png"], r.output
    (out / batch.MANIFEST).write_text("{ damaged")  # what it recorded is lost: its outputs are no longer known
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q")
    assert r.exit_code == 1 and "is damaged" in r.stderr and "--force" in r.stderr
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--force")
    assert r.exit_code == 1 and "exists and no batch made it; pass --overwrite" in r.stderr
    assert run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--force", "--overwrite").exit_code == 0


def test_an_error_of_the_callers_on_done_is_its_own(folder, tmp_path, weights_path):
    """An ArtemError raised by on_done for an image done leaves it done (it was recorded failed too,
    and painted again on the rerun): it goes up to the caller as it is."""
    from artem_cli.api import Settings

    def on_done(job, entry):
        if entry["state"] == "done":
            raise ArtemError("the caller's own check failed")

    (folder / "broken.png").unlink()
    settings = Settings(size=40, iterations=2, style_layers=(("relu1_1", 1.0),), content_layers=(("relu2_2", 1.0),))
    with pytest.raises(ArtemError, match="^the caller's own check failed$"):
        batch.run(folder, tmp_path / "out", [(STYLE,)], settings, weights_path=weights_path, on_done=on_done)
    images = manifest(tmp_path / "out")["images"]
    assert list(images) == ["chelsea.png"] and images["chelsea.png"]["state"] == "done"


def test_batch_settings_none_are_the_defaults_and_others_are_refused(folder, tmp_path):
    batch.check_options(folder, tmp_path / "out", [(STYLE,)], None)  # the defaults: valid
    with pytest.raises(ArtemError, match="^settings must be an artem_cli.Settings"):
        batch.run(folder, tmp_path / "out", [(STYLE,)], {"size": 40})
    # style sets that are no list of lists of paths (a flat list was read letter by letter), none at all, flags
    for style_sets, message in (([STYLE], "the style sets must be a list of lists of style image paths"),
                                ([], "the style sets must be a list"), ([[]], "the style sets must be a list"),
                                ([[None]], "the style image must be a path")):
        with pytest.raises(ArtemError, match=f"^{message}"):
            batch.run(folder, tmp_path / "out", style_sets, None)
    for flags, message in ((dict(force="yes"), "force must be True or False"),
                           (dict(init_previous=1), "init_previous must be True or False"),
                           (dict(include="coffee*"), "include must be a list of glob patterns")):
        with pytest.raises(ArtemError, match=f"^{message}"):
            batch.run(folder, tmp_path / "out", [(STYLE,)], None, **flags)
    with pytest.raises(ArtemError, match="^the input folder must be a path"):
        batch.run(None, tmp_path / "out", [(STYLE,)], None)
    assert not (tmp_path / "out").exists()


def test_a_manifest_that_is_no_file_is_refused_before_any_image(folder, tmp_path, weights_path):
    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    (out / batch.MANIFEST).mkdir(parents=True)
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", "--force")
    assert (r.exit_code, r.stderr) == (1, f"Error: '{out / batch.MANIFEST}', where a batch keeps its manifest, is a "
                                          "folder; move it away or give another output folder\n")
    assert [p.name for p in out.iterdir()] == [batch.MANIFEST]


@pytest.mark.parametrize("text", ["[]", '{"fingerprint": "f", "record": {}, "images": []}', '{"fingerprint": "f"}',
                                  '{"fingerprint": "f", "record": null, "images": {}}',
                                  '{"fingerprint": "f", "record": {}, "images": {}, "written": null}',
                                  '{"fingerprint": "f", "record": {"settings": 3}, "images": {}}',
                                  '{"fingerprint": "f", "record": {}, "images": {"a.png": {"output": 5}}}',
                                  '{"fingerprint": "g", "record": {"options": "oops"}, "images": {}}',
                                  '{"fingerprint": "g", "record": {"settings": null}, "images": {}}',
                                  b"\x89PNG\r\n\x1a\n", b'{"fingerprint": "\xff"}'])
def test_a_manifest_of_another_shape_is_damaged(text, tmp_path):
    """Valid JSON that is not a manifest, or no UTF-8 text: the damaged-manifest error (one line), and
    with --force a batch anew."""
    (tmp_path / batch.MANIFEST).write_bytes(text if isinstance(text, bytes) else text.encode())
    record = {"settings": {"size": 48}, "styles": ["s.png"], "options": {}}
    with pytest.raises(ArtemError, match="is damaged .*; pass --force to start the batch anew"):
        batch.Manifest(tmp_path, "f", record)
    assert batch.Manifest(tmp_path, "f", record, force=True).data == {"fingerprint": "f", "record": record, "images": {},
                                                                       "written": []}


@pytest.mark.parametrize("when", ["between two images", "during the second image"])
def test_a_signal_stops_a_batch_after_its_first_image(when, folder, tmp_path, weights_path, monkeypatch):
    """The first image ends its stylization and its result is written; a signal then (recorded only:
    the result is whole) or during the next image (taken at its next evaluation) stops the batch
    there, the first image kept."""
    out = tmp_path / "out"
    done, evaluate = batch._Batch.done, api.Objective.probed
    second = []  # evaluations since the first image was written

    def done_then_signal(self, job, result, alpha):
        entry = done(self, job, result, alpha)
        second.append("written")
        if when == "between two images":
            os.kill(os.getpid(), signal.SIGINT)
        return entry

    def signal_in_the_second_image(self, x, probes):
        if second:
            second.append("evaluated")
            if when == "during the second image" and len(second) == 4:
                os.kill(os.getpid(), signal.SIGINT)
        return evaluate(self, x, probes)

    monkeypatch.setattr(batch._Batch, "done", done_then_signal)
    monkeypatch.setattr(api.Objective, "probed", signal_in_the_second_image)
    r = run("batch", folder, "--style", STYLE, "-o", out, *FAST[:2], "--iterations", "30", *FAST[4:], "-q")
    assert r.exit_code == 130 and "Interrupted (SIGINT): 1 image done in this run" in r.stderr, r.output
    assert "failed: broken.png: content image" in r.stderr  # under --quiet, listed when the batch stops
    assert (out / "chelsea.png").is_file() and not (out / "coffee.png").exists()
    assert manifest(out)["images"]["chelsea.png"]["state"] == "done" and "coffee.png" not in manifest(out)["images"]


def test_the_json_summary_lists_the_images_in_the_inputs_order():
    """Local workers finish the images in any order: --json lists them in the inputs' (it changed from
    one run to the next)."""
    from artem_cli import cli

    summary = batch.Summary(done=["frame10.png", "frame2.png"], skipped=["frame3.png", "frame1.png"],
                            failed={"frame11.png": "e", "frame4.png": "e"},
                            images={"frame10.png": {"n": 10}, "frame2.png": {"n": 2}})
    summary.contents = {f"frame{n}.png": f"frame{n}.png" for n in (1, 2, 3, 4, 10, 11)}
    printed = cli._batch_json(summary)
    assert (printed["done"], printed["skipped"]) == (["frame2.png", "frame10.png"], ["frame1.png", "frame3.png"])
    assert list(printed["failed"]) == ["frame4.png", "frame11.png"] and list(printed["images"]) == ["frame2.png", "frame10.png"]
    assert list(printed["contents"]) == [f"frame{n}.png" for n in (1, 2, 3, 4, 10, 11)]


def test_a_result_whole_before_a_ctrl_c_is_kept_and_the_batch_stops(folder, tmp_path, weights_path, monkeypatch):
    """A Ctrl-C after an image's last iteration (as a library caller without handlers gets it) leaves
    its result whole: it is written and recorded, then the batch stops (it was thrown away)."""
    (folder / "broken.png").unlink()
    stylize = api.Stylizer.stylize

    def ctrl_c_after_the_last_iteration(self, *args, **kwargs):
        return dataclasses.replace(stylize(self, *args, **kwargs), interrupted=True)

    monkeypatch.setattr(api.Stylizer, "stylize", ctrl_c_after_the_last_iteration)
    out = tmp_path / "out"
    settings = api.Settings(size=40, iterations=3)
    summary = batch.run(folder, out, [[STYLE]], settings)
    assert (summary.done, summary.interrupted) == (["chelsea.png"], True)
    assert manifest(out)["images"]["chelsea.png"]["state"] == "done" and "coffee.png" not in manifest(out)["images"]
    assert sorted(p.name for p in out.iterdir()) == ["artem-batch.json", "chelsea.png"]


def test_a_batch_that_cannot_start_leaves_no_output_folder(folder, tmp_path, weights_path, monkeypatch):
    out = tmp_path / "out"
    for args, message in [(("--first-iterations", "5"), "--first-iterations goes with --init previous"),
                          (("--style-blend", "0.5,0.5"), "style-blend has 2 weights for 1 style images"),
                          (("--device", "cuda"), "--device cuda needs CuPy"),
                          (("--scheduler", "garbage"), "the Dask cluster at 'garbage'")]:
        monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
        r = run("batch", folder, "--style", STYLE, "-o", out, *FAST, "-q", *args)
        assert r.exit_code == 1 and r.stderr.startswith("Error: ") and message in r.stderr, r.output
        assert not out.exists()


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_frames_painted_again_repaint_every_later_frame_as_a_fresh_batch_would(suffix, tmp_path, weights_path):
    """Each frame starts from the previous one's result: when one is painted again (its content
    changed), every later one must be too, and from the result as saved (8 bits; JPEG's loss), as a
    fresh batch would, up to a frame that keeps failing: the one after it starts from its content, as
    before, and is not painted again."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for n in (1, 2, 3, 4):
        shutil.copy(EXAMPLES / "chelsea.png", frames / f"frame{n}.png")
    (frames / "frame3.png").write_text("a broken frame")
    again, fresh = tmp_path / "again", tmp_path / "fresh"
    args = [*FAST, "--init", "previous", "-q", "--json", "--template", "{stem}" + suffix]
    assert run("batch", frames, "--style", STYLE, "-o", again, *args).exit_code == 1
    r = run("batch", frames, "--style", STYLE, "-o", again, *args)
    assert r.exit_code == 1 and json.loads(r.stdout)["done"] == [] and list(json.loads(r.stdout)["failed"]) == [f"frame3{suffix}"]
    shutil.copy(EXAMPLES / "coffee.png", frames / "frame2.png")
    r = run("batch", frames, "--style", STYLE, "-o", again, *args)
    assert json.loads(r.stdout)["done"] == [f"frame2{suffix}"]
    assert run("batch", frames, "--style", STYLE, "-o", fresh, *args).exit_code == 1
    for n in (1, 2, 4):
        assert (again / f"frame{n}{suffix}").read_bytes() == (fresh / f"frame{n}{suffix}").read_bytes(), n


@pytest.mark.parametrize("harm", ["truncated", "emptied", "recompressed", "edited", "no hash recorded"])
def test_an_output_damaged_since_is_painted_again_and_one_edited_is_kept(harm, tmp_path, weights_path):
    """A result that is no image any more (cut short by a disk, emptied) is not done: it is painted again,
    and the frames after it from it, so that the files are a fresh batch's (it counted as done
    forever: the next frame failed on it at every rerun, and the frames after that were painted from
    their contents). One that is still an image (recompressed, retouched by hand) is kept as the
    batch's result, and the frames after it start from it. An entry of an earlier artem, which
    recorded no output's SHA-256, is held to the same, once."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for n, name in enumerate(["chelsea.png", "coffee.png", "chelsea.png", "coffee.png"], start=1):
        shutil.copy(EXAMPLES / name, frames / f"frame{n}.png")
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    args = [*FAST, "--init", "previous", "-q", "--json"]
    assert run("batch", frames, "--style", STYLE, "-o", fresh, *args).exit_code == 0
    assert run("batch", frames, "--style", STYLE, "-o", out, *args).exit_code == 0
    if harm == "no hash recorded":  # and damaged since
        data = manifest(out)
        for entry in data["images"].values():
            del entry["output_sha256"]
        (out / batch.MANIFEST).write_text(json.dumps(data))
    second = out / "frame2.png"
    pixels = Image.open(second)
    pixels.load()
    if harm == "recompressed":  # the same pixels in other bytes, as an optimizer leaves them
        pixels.save(second, compress_level=0)
    elif harm == "edited":
        second.write_bytes((EXAMPLES / "coffee.png").read_bytes())
    else:
        data = second.read_bytes()
        second.write_bytes(b"" if harm == "emptied" else data[: len(data) // 2])
    kept = second.read_bytes()
    r = run("batch", frames, "--style", STYLE, "-o", out, *args)
    summary = json.loads(r.stdout)
    if harm in ("recompressed", "edited"):
        assert (r.exit_code, summary["done"], summary["skipped"]) == (0, ["frame3.png", "frame4.png"],
                                                                      ["frame1.png", "frame2.png"]), r.output
        assert second.read_bytes() == kept and manifest(out)["images"]["frame2.png"]["output_sha256"] == batch._sha256(second)
        if harm == "recompressed":  # started from the same pixels: a fresh batch's files
            assert all((out / f"frame{n}.png").read_bytes() == (fresh / f"frame{n}.png").read_bytes() for n in (3, 4))
    else:
        assert (r.exit_code, summary["done"], summary["skipped"]) == (0, ["frame2.png", "frame3.png", "frame4.png"],
                                                                      ["frame1.png"]), r.output
        assert all((out / f"frame{n}.png").read_bytes() == (fresh / f"frame{n}.png").read_bytes() for n in (1, 2, 3, 4))
    r = run("batch", frames, "--style", STYLE, "-o", out, *args)
    assert json.loads(r.stdout)["skipped"] == [f"frame{n}.png" for n in (1, 2, 3, 4)]
    assert all("output_sha256" in entry for entry in manifest(out)["images"].values())


def test_a_batchs_time_counts_its_clusters_start_and_stop(tmp_path, weights_path, monkeypatch):
    """--workers: the summary said 14.9 s of a 20.6 s run (and 0.1 s of 5 s with nothing to do), the
    local cluster's start and stop left out. A clock that a cluster's start and stop move by 100 s."""
    from artem_cli import cli

    late = [0.0]
    monkeypatch.setattr(cli, "time", mock.Mock(perf_counter=lambda: time.perf_counter() + late[0]))

    @contextlib.contextmanager
    def cluster(scheduler, workers, interruptible):
        late[0] += 100
        yield None  # the images painted here
        late[0] += 100

    monkeypatch.setattr(batch, "dask_client", cluster)
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLES / "chelsea.png", photos / "a.png")
    r = run("batch", photos, "--style", STYLE, "-o", tmp_path / "out", *FAST, "-q", "--json")
    assert r.exit_code == 0, r.output
    assert 200 < json.loads(r.stdout)["seconds"] < 300 and re.search(r"failed, in 2\d\d\.\d s$", r.stderr), r.output


def test_frames_of_another_folder_or_shape_start_a_clip_of_their_own(tmp_path, weights_path):
    """--init previous with --recursive: a subfolder's first frame started from another folder's last
    result (and a folder's frames after a subfolder's, sorted among them by name, from the subfolder's), and a frame of other proportions from the one before it stretched (a cat started from a
    stretched astronaut). Each starts from its content with --first-iterations, as a first frame, on a
    rerun too (a frame changed before it leaves it alone), and the dry run predicts it so."""
    frames = tmp_path / "frames"
    (frames / "sub").mkdir(parents=True)
    chelsea = Image.open(EXAMPLES / "chelsea.png")
    for name in ("a.png", "b.png", "d.png", "sub/e.png", "sub/f.png", "z.png"):
        chelsea.save(frames / name)
    chelsea.transpose(Image.Transpose.TRANSPOSE).save(frames / "c.png")  # a portrait among landscapes
    out = tmp_path / "out"
    args = ["batch", frames, "--style", STYLE, *FAST[:2], "--iterations", "2", *FAST[4:], "--init", "previous",
            "--first-iterations", "3", "--recursive", "-q", "--json"]
    r = run(*args, "-o", out)
    assert r.exit_code == 0, r.output
    images = manifest(out)["images"]
    order = ["a.png", "b.png", "c.png", "d.png", "z.png", "sub/e.png", "sub/f.png"]  # a folder's frames together
    assert json.loads(r.stdout)["done"] == order
    starts = {"b.png": "a.png", "z.png": "d.png", "f.png": "e.png"}  # the others from their content
    for key in order:
        begins = starts.get(Path(key).name)
        expected = images[str(Path(key).parent / begins)]["output_sha256"] if begins else None
        assert (images[key]["start_sha256"], images[key]["iterations"]) == (expected, 2 if begins else 3), key
    assert images["c.png"]["shape"] == [40, 27] and images["d.png"]["shape"] == [27, 40]
    r = run(*args, "-o", out)
    assert json.loads(r.stdout)["skipped"] == order
    Image.open(EXAMPLES / "coffee.png").save(frames / "a.png")  # changed: b starts from it again, c on starts anew
    r = run(*args, "-o", out)
    assert (json.loads(r.stdout)["done"], json.loads(r.stdout)["skipped"]) == (["a.png", "b.png"], order[2:])
    r = run(*args, "-o", tmp_path / "dry", "--dry-run")
    assert r.exit_code == 0, r.output
    predicted = json.loads(r.stdout)["images"]
    assert [predicted[str(frames / key)]["iterations"] for key in order] == [3, 2, 3, 3, 2, 3, 2]


def test_frames_whose_previous_frame_is_gone_or_fails_start_as_in_a_fresh_batch(tmp_path, weights_path):
    """A frame left out (removed, or by --exclude): the next one started from its result, and is
    painted again from the frame now before it, and every later one with it. A frame that fails
    after it was done: the next one starts from its content, as in a fresh batch where the failed
    frame left no result, not from the result it left before."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for n, name in enumerate(["chelsea.png", "coffee.png", "chelsea.png", "coffee.png"], start=1):
        shutil.copy(EXAMPLES / name, frames / f"frame{n}.png")
    out = tmp_path / "out"
    args = [*FAST, "--init", "previous", "-q", "--json"]
    assert run("batch", frames, "--style", STYLE, "-o", out, *args).exit_code == 0

    def fresh(name, *more):
        folder = tmp_path / name
        assert run("batch", frames, "--style", STYLE, "-o", folder, *args, *more).exit_code in (0, 1)
        return folder

    r = run("batch", frames, "--style", STYLE, "-o", out, *args, "--exclude", "frame2.png")
    assert json.loads(r.stdout)["done"] == ["frame3.png", "frame4.png"] and json.loads(r.stdout)["skipped"] == ["frame1.png"]
    expected = fresh("fresh_excluded", "--exclude", "frame2.png")
    assert all((out / f).read_bytes() == (expected / f).read_bytes() for f in ("frame3.png", "frame4.png"))
    r = run("batch", frames, "--style", STYLE, "-o", out, *args)  # frame2 back: frame3 and 4 again from it
    assert json.loads(r.stdout)["done"] == ["frame3.png", "frame4.png"]
    (frames / "frame2.png").write_text("broken since")
    r = run("batch", frames, "--style", STYLE, "-o", out, *args)
    summary = json.loads(r.stdout)
    assert list(summary["failed"]) == ["frame2.png"] and summary["done"] == ["frame3.png", "frame4.png"]
    expected = fresh("fresh_broken")
    assert all((out / f).read_bytes() == (expected / f).read_bytes() for f in ("frame1.png", "frame3.png", "frame4.png"))
