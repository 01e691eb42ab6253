"""Distillation: its data, a few steps that lower the loss, checkpoints that resume exactly, the
trained weights file (round trip, checksums), and the command."""
import dataclasses
import json
import os
import re
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

from artem_cli import api, binarize, distill, io, preprocess, weights
from artem_cli.cli import main
from artem_cli.errors import ArtemError
from artem_cli.vgg import CONV_LAYERS, CONV_NAMES
from conftest import EXAMPLES, REPO

TINY = dict(crop=48, batch=2, stylized=1, stylize_every=2, stylize_iterations=2, pool=2)


@pytest.fixture(scope="session")
def training_cache(tmp_path_factory):
    """A cache folder holding the training images, fetched once for the whole session."""
    cache = tmp_path_factory.mktemp("cache")
    with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": str(cache)}):
        distill.training_image_paths()
    return cache


@pytest.fixture
def image_paths(training_cache, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(training_cache))
    return distill.training_image_paths()


def test_training_images_are_fetched_and_read(image_paths, tmp_path):
    assert [p.name for p in image_paths] == list(distill.TRAINING_IMAGES)
    for path in image_paths:
        rgb, _ = io.read_image(path)
        assert rgb.shape[0] == 3 and min(rgb.shape[1:]) >= 128
    folder = tmp_path / "more"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "cat.png").write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "._cat.png").write_bytes(b"macOS's resource fork: hidden, as a batch's inputs")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "thumb.png").write_bytes(b"hidden too")
    assert distill.training_image_paths([folder])[-1:] == [folder / "deep" / "cat.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtemError, match="holds no image files"):
        distill.training_image_paths([tmp_path / "empty"])
    with pytest.raises(ArtemError, match="does not exist"):
        distill.training_image_paths([tmp_path / "nowhere"])


def test_random_crops_have_the_size_asked_and_vary(image_paths):
    rgb, _ = io.read_image(image_paths[0])  # camera: grey, so coloured by the crop
    rng = np.random.default_rng(0)
    crops = [distill.random_crop(rng, rgb, 40) for _ in range(4)]
    assert all(c.shape == (3, 40, 40) and c.dtype == np.float32 for c in crops)
    assert all(0 <= c.min() and c.max() <= 1 for c in crops)
    assert len({c.tobytes() for c in crops}) == 4
    assert any(np.ptp(c - c.mean(axis=0)) > 0.05 for c in crops)  # colours, from a grey image


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_a_few_steps_lower_the_distillation_loss(image_paths, weights_path, mode):
    settings = distill.DistillSettings(mode=mode, binary_from="conv3_1", steps=12, lr=0.03, **{**TINY, "stylized": 0})
    trainer = distill.Trainer(settings, image_paths[:3])
    theta0 = trainer.student.theta0

    def loss_on_fixed_images(theta):  # the same images before and after
        return np.mean([trainer.loss(theta, step)[0] for step in (1, 2, 3)])

    before = loss_on_fixed_images(theta0)
    theta = trainer.run()
    assert loss_on_fixed_images(theta) < 0.9 * before
    assert len(trainer.history) == 12


def test_a_checkpoint_resumes_to_exactly_the_same_state(image_paths, weights_path, tmp_path):
    """Four steps straight, or two, a checkpoint, an interruption, and the rest in a new trainer:
    the same θ, bit for bit, the student's stylized images (made every second step) included."""
    settings = distill.DistillSettings(mode="xnor", binary_from="conv4_1", steps=4, **TINY)
    straight = distill.Trainer(settings, image_paths[:3]).run()
    checkpoint = tmp_path / "c.npz"

    def interrupt_at_2(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill.Trainer(settings, image_paths[:3]).run(checkpoint, checkpoint_every=1, progress=interrupt_at_2)
    resumed = distill.Trainer(settings, image_paths[:3])
    theta = resumed.run(checkpoint, resume=True)
    np.testing.assert_array_equal(theta, straight)
    assert resumed.seconds_before > 0  # the interrupted run's seconds count in the file's "made in"
    assert [k for k, _ in resumed.history] == [1, 2, 3, 4]
    other = distill.Trainer(distill.DistillSettings(**{**settings.__dict__, "crop": 64}), image_paths[:3])
    with pytest.raises(ArtemError, match=r"other settings \(crop\)"):
        other.run(checkpoint, resume=True)
    heavier = distill.Trainer(distill.DistillSettings(**{**settings.__dict__, "content_weight": 2.0}), image_paths[:3])
    with pytest.raises(ArtemError, match=r"other settings \(content_weight\)"):
        heavier.run(checkpoint, resume=True)
    for images in (image_paths[:4], image_paths[:3][::-1]):  # another image, or the same in another order: other data
        with pytest.raises(ArtemError, match="was made with other training images"):
            distill.Trainer(settings, images).run(checkpoint, resume=True)
    teacher = tmp_path / "teacher.npz"  # another VGG16 (changes every step's loss): refused, not learnt from anew
    w = weights.load(weights_path)
    weights.save({k: v * (1.01 if k == "conv5_1.bias" else 1) for k, v in w.items()}, teacher, "a nudged VGG16")
    with pytest.raises(ArtemError, match="learnt from another VGG16 \\(--weights\\); resume with the same one"):
        distill.Trainer(settings, image_paths[:3], weights_path=teacher).run(checkpoint, resume=True)
    weights.save(w, teacher, "the same arrays, written again")  # the same VGG16 in another file: resumed
    again = distill.Trainer(settings, image_paths[:3], weights_path=teacher)
    np.testing.assert_array_equal(again.run(checkpoint, resume=True), straight)


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_default(image_paths, weights_path, tmp_path):
    settings = distill.DistillSettings(mode="bwn", binary_from="conv5_1", steps=2, **TINY)
    checkpoint = tmp_path / "c.npz"
    distill.Trainer(dataclasses.replace(settings, steps=1), image_paths[:2]).run(checkpoint)
    with np.load(checkpoint) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    del meta["settings"]["content_weight"]  # as written before content_weight existed
    np.savez(checkpoint, **{**arrays, "__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    resumed = distill.Trainer(settings, image_paths[:2])
    resumed.run(checkpoint, resume=True)
    assert [k for k, _ in resumed.history] == [1, 2]
    for load in (weights.load_binary, weights.load_file):  # a checkpoint named where a network is wanted
        with pytest.raises(ArtemError, match="is a checkpoint of artem distill, not a network: give the file it writes"):
            load(checkpoint)
    with pytest.raises(ArtemError, match=r"other settings \(content_weight\)"):
        distill.Trainer(dataclasses.replace(settings, content_weight=3.0), image_paths[:2]).run(checkpoint, resume=True)


def test_a_file_that_is_no_checkpoint_is_one_clear_error(image_paths, weights_path, tmp_path):
    """An image, the VGG16 weights, trained binary weights (an .npz with settings of its own), text."""
    from conftest import REPO

    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    trainer = distill.Trainer(distill.DistillSettings(mode="bwn", binary_from="conv5_1", steps=2, **TINY), image_paths[:2])
    for path, reason in [(image_paths[0], "not an .npz archive"), (text, "not an .npz archive"),
                         (weights_path, "no training state in it"), (REPO / "weights" / "bwn.npz", "no training state in it")]:
        with pytest.raises(ArtemError, match=rf"^'{re.escape(str(path))}' is not a checkpoint of artem distill \({reason}\)$"):
            trainer.run(path, resume=True)


def test_the_content_weight_weighs_the_features_at_the_content_layer_alone(image_paths, weights_path):
    """The loss is linear in content_weight, with the relu4_2 feature term as its slope, and that
    term is the part of the loss the content layer's features make."""
    settings = distill.DistillSettings(mode="bwn", binary_from="conv4_1", **TINY)
    trainer = distill.Trainer(settings, image_paths[:2])
    net = trainer.network(trainer.student.theta0)
    image = preprocess.to_vgg(distill.random_crop(np.random.default_rng(3), io.read_image(image_paths[1])[0], 48))
    totals = [distill.distill_loss(net, trainer.teacher, image, dataclasses.replace(settings, content_weight=w), "conv4_1")
              for w in (0.0, 1.0, 3.0)]
    target = trainer.teacher.forward(image, ["relu4_2"])["relu4_2"]
    features = net.forward(image, ["relu4_2"])["relu4_2"]
    term = float(((features - target) ** 2).mean() / ((target * target).mean() + 1e-12))
    assert totals[1] - totals[0] == pytest.approx(term, rel=1e-3)
    assert totals[2] - totals[0] == pytest.approx(3 * term, rel=1e-3)


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_the_content_gain_scales_the_content_layer_alone(weights_path, mode):
    """relu4_2's features times the gain, every layer after it as before (the shifts made non-zero,
    as training leaves them)."""
    from artem_cli.vgg import VGG16

    w, rng = weights.load(weights_path), np.random.default_rng(1)
    layers = {}
    for name, layer in api.untrained_binary(w, "conv4_1").items():
        shift = rng.standard_normal(len(layer.shift)).astype(np.float32) if mode == "xnor" else layer.shift
        layers[name] = layer._replace(shift=shift)
    image = preprocess.to_vgg(distill.random_crop(rng, io.read_image(EXAMPLES / "chelsea.png")[0], 64))
    taps = ["relu4_1", "relu4_2", "relu4_3", "relu5_1", "relu5_3"]
    plain = VGG16(w, mode=mode, binary=layers).forward(image, taps)
    scaled = VGG16(w, mode=mode, binary=distill.with_content_gain(layers, 1.7)).forward(image, taps)
    for tap in taps:
        gain = 1.7 if tap == "relu4_2" else 1.0
        np.testing.assert_allclose(scaled[tap], gain * plain[tap], rtol=1e-4, atol=1e-4 * float(np.abs(plain[tap]).max()))
    assert np.abs(plain["relu4_2"]).max() > 0 and distill.with_content_gain(layers, 1.0) is layers


def test_a_file_with_a_content_gain_used_binary_from_after_its_content_layer_paints_as_one_without(weights_path,
                                                                                                   tmp_path):
    """The shipped xnor network carries a content gain (conv4_2 scaled up, conv4_3 scaled down to
    match): binary from conv4_3 on, conv4_2 is fp32's, without the gain, and conv4_3 must not undo
    it (every later feature was 1/gain too small). Against the same layers written without the gain."""
    meta = weights.load_binary(weights.trained_binary("xnor"))[1]
    gain = meta["settings"]["content_gain"]
    assert gain != 1 and meta["settings"]["binary_from"] == distill.CONTENT_CONV
    layers = api.trained_binary_layers(api.Settings(mode="xnor"))
    without = tmp_path / "without.npz"
    weights.save_binary(distill.with_content_gain(layers, 1 / gain), without,
                        {**meta, "settings": {**meta["settings"], "content_gain": 1.0}})
    w = weights.load(weights_path)
    image = preprocess.to_vgg(preprocess.resize(io.read_image(EXAMPLES / "chelsea.png")[0], (64, 96)))
    taps = ["relu4_3", "relu5_1"]
    shipped, plain = (api.network(api.Settings(mode="xnor", binary_weights=f, binary_from="conv4_3"), w).forward(image, taps)
                      for f in ("trained", str(without)))
    for tap in taps:
        np.testing.assert_allclose(shipped[tap], plain[tap], rtol=1e-3, atol=1e-3 * float(np.abs(plain[tap]).max()))


def test_a_content_gain_is_applied_when_the_file_is_written_and_needs_no_new_training(image_paths, weights_path, tmp_path):
    """Resuming the last checkpoint with another gain is allowed (the training is the same) and
    writes the same network with the content layer scaled."""
    settings = distill.DistillSettings(mode="xnor", binary_from="conv4_1", steps=1, **TINY)
    checkpoint = tmp_path / "c.npz"
    trainer = distill.Trainer(settings, image_paths[:2])
    trainer.export(trainer.run(checkpoint), tmp_path / "plain.npz", 1.0)
    again = distill.Trainer(dataclasses.replace(settings, content_gain=2.0), image_paths[:2])
    again.export(again.run(checkpoint, resume=True), tmp_path / "gain.npz", 1.0)
    (plain, _), (gain, meta) = (weights.load_binary(tmp_path / f) for f in ("plain.npz", "gain.npz"))
    assert meta["settings"]["content_gain"] == 2.0
    for name in plain:
        factor = {"conv4_2": (2.0, 2.0, 1.0), "conv4_3": (0.5, 1.0, 2.0)}.get(name, (1.0, 1.0, 1.0))
        np.testing.assert_array_equal(gain[name].signs, plain[name].signs)
        for part, f in zip(("alpha", "bias", "shift"), factor):
            np.testing.assert_allclose(getattr(gain[name], part), f * getattr(plain[name], part), rtol=1e-6)
    for bad, message in [(dict(content_gain=0.0), "content gain must be a number from 0.01 to 100, not 0.0"),
                         (dict(content_gain=1e300), "content gain must be a number from 0.01 to 100"),  # inf in float32
                         (dict(content_gain=1e-300), "content gain must be a number from 0.01 to 100"),
                         (dict(content_gain=float("nan")), "content gain must be"),
                         (dict(content_gain=1.4, binary_from="conv4_3"), "scales conv4_2, which is not binary from conv4_3"),
                         (dict(binary_from="conv5_2"), "binary-from must be one of conv1_2, .*, conv5_1 .the convolutions a loss sees"),
                         (dict(binary_from="conv1_1"), "binary-from must be one of")]:
        with pytest.raises(ArtemError, match=message):
            dataclasses.replace(settings, **bad).validate()


def test_the_trained_weights_file_round_trips_and_fails_its_checksum_when_altered(weights_path, tmp_path):
    w = weights.load(weights_path)
    rng = np.random.default_rng(0)
    layers = {}
    for name in ("conv4_3", "conv5_1", "conv5_2", "conv5_3"):
        layer = binarize.untrained(w[f"{name}.weight"], w[f"{name}.bias"])
        layers[name] = layer._replace(shift=rng.standard_normal(len(layer.shift)).astype(np.float32))
    path = tmp_path / "b.npz"
    weights.save_binary(layers, path, {"mode": "xnor"})
    assert path.stat().st_size < 1.25e6  # 9.4 M signs in 1.18 MB, and the float vectors
    back, meta = weights.load_binary(path)
    assert meta["mode"] == "xnor" and list(back) == list(layers)
    for name, layer in layers.items():
        for part in weights.BINARY_PARTS:
            np.testing.assert_array_equal(getattr(back[name], part), getattr(layer, part))
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["conv5_1.signs"] = arrays["conv5_1.signs"] ^ np.uint32(1)  # one weight's sign flipped
    altered = tmp_path / "altered.npz"
    np.savez(altered, **arrays)
    with pytest.raises(ArtemError, match="corrupt: conv5_1.signs does not match its checksum"):
        weights.load_binary(altered)
    meta_bad = dict(arrays, __meta__=np.frombuffer(json.dumps({"mode": "ternary"}).encode(), np.uint8))
    np.savez(altered, **meta_bad)
    with pytest.raises(ArtemError, match="not readable|damaged"):
        weights.load_binary(altered)
    for meta in ({"mode": ["xnor"], "layers": list(layers), "sha256": {}},  # written by hand: a TypeError's traceback
                 {"mode": "xnor", "layers": 5, "sha256": {}}):
        np.savez(altered, **dict(arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8)))
        with pytest.raises(ArtemError, match="has damaged metadata"):
            weights.load_binary(altered)
        with pytest.raises(ArtemError):  # one line, whichever
            weights.load_file(altered)


@pytest.mark.parametrize("forged", [np.array(["x"] * 512), np.ones(512, np.float64)])
def test_a_binary_file_with_a_part_of_another_dtype_and_a_matching_checksum_is_one_clear_error(weights_path, tmp_path,
                                                                                                forged):
    """A file written with artem's checksums (not by `artem distill`) whose alpha is strings (the
    NaN check raised a TypeError there) or float64 (it passed, and made float64 layers)."""
    w = weights.load(weights_path)
    layer = binarize.untrained(w["conv5_1.weight"], w["conv5_1.bias"])
    arrays = {f"conv5_1.{part}": getattr(layer, part) for part in weights.BINARY_PARTS}
    arrays["conv5_1.alpha"] = forged
    weights._write_checked(arrays, {"mode": "xnor", "layers": ["conv5_1"]}, tmp_path / "forged.npz")
    with pytest.raises(ArtemError, match=f"conv5_1.alpha is {forged.dtype}, not float32; make it again with 'artem distill'"):
        weights.load_binary(tmp_path / "forged.npz")


def test_a_distilled_file_drives_stylization_and_binary_from(image_paths, weights_path, tmp_path):
    settings = distill.DistillSettings(mode="bwn", binary_from="conv4_1", steps=1, **TINY)
    trainer = distill.Trainer(settings, image_paths[:2])
    trainer.export(trainer.run(), tmp_path / "s.npz", 1.0)
    content, _ = io.read_image(EXAMPLES / "chelsea.png")
    style, _ = io.read_image(EXAMPLES / "ihc.png")
    result = api.stylize(content, [style], api.Settings(size=48, iterations=3, mode="bwn", binary_weights=str(tmp_path / "s.npz")))
    assert result.losses["total"] < result.initial_losses["total"]
    with pytest.raises(ArtemError, match="binary from conv4_1 on; binary-from must be conv4_1 or a later layer"):
        api.stylize(content, [style], api.Settings(size=48, iterations=1, mode="bwn", binary_from="conv3_1",
                                                   binary_weights=str(tmp_path / "s.npz")))
    with pytest.raises(ArtemError, match="holds a trained bwn network, not xnor"):
        api.stylize(content, [style], api.Settings(size=48, iterations=1, mode="xnor", binary_weights=str(tmp_path / "s.npz")))
    r = CliRunner().invoke(main, ["weights", "info", "--binary-weights", str(tmp_path / "s.npz")])
    assert r.exit_code == 0 and "bwn network: trained (your file):" in r.output and "binary from conv4_1" in r.output
    assert "xnor network: none:" in r.output
    for missing, what in [(tmp_path / "nope.npz", "does not exist"), (tmp_path, "is a folder")]:
        r = CliRunner().invoke(main, ["weights", "info", "--binary-weights", str(missing)])
        assert (r.exit_code, r.stderr) == (1, f"Error: binary weights file '{missing}' {what}\n")


def test_distill_command(training_cache, weights_path, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(training_cache))
    out = tmp_path / "x.npz"
    args = ["distill", "--mode", "xnor", "--binary-from", "conv5_1", "--steps", "2", "--batch", "1", "--stylized", "0",
            "--crop", "48", "-o", str(out), "-q"]
    r = CliRunner().invoke(main, args[:-1])  # not --quiet: no bar where standard error is no terminal, a line at the end
    assert r.exit_code == 0, r.output
    assert weights.binary_info(out)["mode"] == "xnor" and (tmp_path / "x.npz.ckpt.npz").is_file()
    assert r.stderr.startswith("step 2/2: loss ") and "\r" not in r.stderr and r.stderr.count("\n") == 2, r.stderr
    size = round((tmp_path / "x.npz.ckpt.npz").stat().st_size / 2**20)
    assert r.stderr.endswith(f"; the checkpoint {tmp_path / 'x.npz.ckpt.npz'} ({size} MiB) is kept for --resume with "
                             "more --steps: delete it if you will not\n") and size > 0, r.stderr
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "already exists" in r.stderr
    # --resume with more steps replaces the network its training wrote (a resume's too), not another file
    for steps in (3, 4):
        r = CliRunner().invoke(main, [*args[:-3], "--steps", str(steps), "--resume", "-o", str(out), "-q"])
        assert r.exit_code == 0 and weights.load_binary(out)[1]["settings"]["steps"] == steps, r.output
    layers, meta = weights.load_binary(out)
    for other in ({**meta, "run_id": "another training's"}, {k: v for k, v in meta.items() if k != "run_id"}):
        weights.save_binary(layers, out, other)  # another training's network, one from before 2026-12-07
        r = CliRunner().invoke(main, [*args[:-3], "--steps", "5", "--resume", "-o", str(out), "-q"])
        assert (r.exit_code, r.stderr) == (1, f"Error: output '{out}' already exists; pass --overwrite to replace it\n")
    r = CliRunner().invoke(main, [*args[:-3], "--steps", "5", "--resume", "--overwrite", "-o", str(out), "-q"])
    assert r.exit_code == 0 and weights.load_binary(out)[1]["settings"]["steps"] == 5, r.output
    # a checkpoint from before 2026-12-07 (no id): its training's id is drawn from it, the same at each resume
    ckpt = tmp_path / "x.npz.ckpt.npz"
    with np.load(ckpt) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    del meta["run_id"]
    np.savez(ckpt, **{**arrays, "__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    for steps in (5, 6):  # at its step (nothing trained, the checkpoint not written again), then further
        r = CliRunner().invoke(main, [*args[:-3], "--steps", str(steps), "--resume", "-o", str(out), "-q",
                                      *(["--overwrite"] if steps == 5 else [])])  # the network of 5 has the new id
        assert r.exit_code == 0 and weights.load_binary(out)[1]["settings"]["steps"] == steps, r.output
    # a --checkpoint that is no checkpoint: said so first (not "go on from it with --resume")
    (tmp_path / "notes.npz").write_text("x")
    r = CliRunner().invoke(main, [*args[:-3], "-o", str(tmp_path / "z.npz"), "--checkpoint", str(tmp_path / "notes.npz")])
    assert (r.exit_code, r.stderr) == (1, f"Error: '{tmp_path / 'notes.npz'}' is not a checkpoint of artem distill, which "
                                          "--overwrite would replace; give another --checkpoint\n"), r.output
    # a new run beside a checkpoint would replace hours of training: --resume or --overwrite says which
    r = CliRunner().invoke(main, [*args[:-3], "-o", str(tmp_path / "z.npz"), "--checkpoint", str(tmp_path / "x.npz.ckpt.npz"),
                                  "-q"])
    assert r.exit_code == 1 and "exists: go on from it with --resume, or pass --overwrite" in r.stderr, r.output
    (tmp_path / "folder.npz").mkdir()
    r = CliRunner().invoke(main, ["distill", "-o", str(tmp_path / "y.npz"), "--binary-from", "conv5_2", "-q"])
    assert r.exit_code == 2 and "'conv5_2' is not one of 'conv1_2'" in r.stderr, r.output  # as stylize's
    for bad, message in [(["--crop", "8"], "crop must be"), (["--stylized", "5"], "stylized between"),
                         (["-o", str(tmp_path / "folder.npz"), "--overwrite"], "is a folder"),
                         (["-o", str(tmp_path / "none" / "y.npz")], "does not exist"),
                         (["-o", str(tmp_path / "y.png")], "written as an .npz file")]:
        r = CliRunner().invoke(main, ["distill", "-o", str(tmp_path / "y.npz"), *bad, "-q"])
        assert r.exit_code == 1 and message in r.stderr, r.output
    # a read-only folder (root passes permission bits: as a read-only mount refuses) before any step, not at the first checkpoint
    read_only, access = tmp_path / "ro", os.access
    read_only.mkdir()
    with mock.patch.object(os, "access", lambda path, mode: not (mode & os.W_OK and str(path) == str(read_only))
                           and access(path, mode)):
        r = CliRunner().invoke(main, ["distill", "-o", str(read_only / "y.npz"), "-q"])
    assert (r.exit_code, r.stderr) == (1, f"Error: output folder '{read_only}' is not writable\n")


def test_two_distills_that_would_write_one_file_are_not_run_at_once(training_cache, weights_path, tmp_path, monkeypatch):
    """Two distills with one -o (or one --checkpoint) at once both passed their checks before either
    wrote: the one that ended last replaced the other's network and checkpoint, each saying it had
    written its own. While one runs (here a process that holds what a run holds, until told to end),
    another is refused in one line before any work; once it has ended, the files are free again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(training_cache))
    out, checkpoint = tmp_path / "x.npz", tmp_path / "x.npz.ckpt.npz"
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom artem_cli import distill\n"
                               f"with distill.alone_on({str(out)!r}, {str(checkpoint)!r}):\n"
                               "    print('held', flush=True)\n    sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        args = ["distill", "--binary-from", "conv5_1", "--steps", "1", "--batch", "1", "--stylized", "0", "--crop", "48",
                "-q"]
        r = CliRunner().invoke(main, [*args, "-o", str(out)])
        assert (r.exit_code, r.stderr) == (1, f"Error: another distill is writing '{out}' now: wait for it to end, or "
                                              "give another -o\n")
        r = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "y.npz"), "--checkpoint", str(checkpoint)])
        assert (r.exit_code, r.stderr) == (1, f"Error: another distill is writing '{checkpoint}' now: wait for it to "
                                              "end, or give another --checkpoint\n")
        assert list(tmp_path.iterdir()) == []
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    r = CliRunner().invoke(main, [*args, "-o", str(out)])
    assert r.exit_code == 0 and out.is_file() and checkpoint.is_file(), r.output


def test_a_missing_device_is_said_before_the_training_images_are_fetched(tmp_path, monkeypatch, weights_path):
    """--device cuda without CuPy (or a GPU): said first, not after 14 MB of training images were
    downloaded and unpacked into the cache."""
    fetched = []
    monkeypatch.setattr(distill, "training_image_paths", lambda folders=(): fetched.append(folders) or [])
    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
    r = CliRunner().invoke(main, ["distill", "--device", "cuda", "-o", str(tmp_path / "x.npz"), "-q"])
    assert r.exit_code == 1 and r.stderr.startswith("Error: --device cuda needs CuPy"), r.output
    assert fetched == []


def test_a_ctrl_c_that_stops_the_training_images_download_is_an_interruption(tmp_path, monkeypatch, weights_path):
    """A terminal's Ctrl-C reaches pip too, fetching the training images: its failure is the
    interruption's, not an error (exit 1, 'Operation cancelled by user')."""
    import signal

    def cancelled(folders=()):
        os.kill(os.getpid(), signal.SIGINT)  # recorded by distill's handler; pip, in the same group, gives up
        raise ArtemError("could not download scikit-image==0.26.0 with pip: ERROR: Operation cancelled by user")

    monkeypatch.setattr(distill, "training_image_paths", cancelled)
    r = CliRunner().invoke(main, ["distill", "-o", str(tmp_path / "x.npz"), "-q"])
    assert (r.exit_code, r.stderr) == (130, "Interrupted (SIGINT) before the first checkpoint (every 100 steps): "
                                            "nothing to resume\n"), r.output


def test_an_interrupted_distill_says_whether_there_is_a_checkpoint(tmp_path, monkeypatch, weights_path):
    from artem_cli import distill as training

    def interrupted(self, checkpoint=None, checkpoint_every=100, resume=False, progress=None, interruptible=None):
        raise KeyboardInterrupt  # as a step raises it after a signal, during the first steps

    monkeypatch.setattr(training.Trainer, "__init__", lambda self, *args: None)
    monkeypatch.setattr(training.Trainer, "run", interrupted)
    out = tmp_path / "x.npz"
    r = CliRunner().invoke(main, ["distill", "-o", str(out), "-q"])
    assert r.exit_code == 130 and "before the first checkpoint (every 100 steps): nothing to resume" in r.stderr, r.output
    np.savez(tmp_path / "x.npz.ckpt.npz", **{name: np.zeros(1) for name in training.CHECKPOINT_ARRAYS})  # an earlier run's
    r = CliRunner().invoke(main, ["distill", "-o", str(out), "-q", "--resume"])
    assert r.exit_code == 130 and "holds the training up to its last save (every 100 steps); go on with --resume" in r.stderr
    r = CliRunner().invoke(main, ["distill", "-o", str(out), "-q", "--overwrite"])  # a new run; the old checkpoint is not its
    assert (r.exit_code, r.stderr) == (130, f"Interrupted (SIGINT) before this run's first checkpoint (every 100 steps): "
                                            f"{tmp_path / 'x.npz.ckpt.npz'} still holds the earlier training, not this "
                                            "run's\n")
    r = CliRunner().invoke(main, ["distill", "-o", str(out), "--checkpoint", str(out), "-q"])
    assert r.exit_code == 1 and "the checkpoint and the output must be two files" in r.stderr


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_the_binarized_modes_use_the_shipped_trained_networks_by_default(weights_path, mode, tmp_path, monkeypatch):
    from artem_cli.vgg import VGG16

    w = weights.load(weights_path)
    shipped, meta = weights.load_binary(weights.REPO_WEIGHTS_DIR / weights.BINARY_FILES[mode])
    assert meta["mode"] == mode and api.Settings().binary_weights == "trained"
    layers = api.binary_layers(api.Settings(mode=mode), w)
    assert list(layers) == list(shipped)
    for name in layers:
        np.testing.assert_array_equal(layers[name].signs, shipped[name].signs)
    net = api.network(api.Settings(mode=mode), w)
    first = next(iter(shipped))
    assert type(net.layer(first)).__name__ == ("XnorConv3x3" if mode == "xnor" else "BinaryConv3x3")
    assert type(net.layer("conv1_1")).__name__ == "Conv3x3"
    assert isinstance(VGG16(w, mode=mode), VGG16)  # and the untrained network is still there
    for args in ([], ["--binary-weights", str(weights.REPO_WEIGHTS_DIR / weights.BINARY_FILES[mode])]):  # by name too
        r = CliRunner().invoke(main, ["weights", "info", *args])
        assert f"{mode} network: trained (shipped): " in r.output and f"binary from {first}" in r.output
    # a shipped file that does not match the manifest is refused
    copy = tmp_path / "weights"
    copy.mkdir()
    (copy / "manifest.json").write_bytes((weights.REPO_WEIGHTS_DIR / "manifest.json").read_bytes())
    data = bytearray((weights.REPO_WEIGHTS_DIR / weights.BINARY_FILES[mode]).read_bytes())
    data[-100] ^= 1
    (copy / weights.BINARY_FILES[mode]).write_bytes(bytes(data))
    monkeypatch.setattr(weights, "REPO_WEIGHTS_DIR", copy)
    monkeypatch.setattr(weights, "MANIFEST", copy / "manifest.json")
    with pytest.raises(ArtemError, match="does not match the SHA-256 in weights/manifest.json"):
        api.binary_layers(api.Settings(mode=mode), w)


def test_the_readme_gives_the_shares_of_binary_multiply_accumulates_of_the_shipped_networks():
    """bwn ships binary from conv3_2 on, xnor from conv4_2 on: the shares of VGG16's multiply-accumulates
    up to conv5_1 (the deepest layer the default style layers use) that the README gives them."""
    side, total, binary = 1.0, 0.0, {"conv3_2": 0.0, "conv4_2": 0.0}
    for i, (name, cin, cout) in enumerate(CONV_LAYERS[: CONV_NAMES.index("conv5_1") + 1]):
        if name.endswith("_1") and name != "conv1_1":
            side /= 2
        macs = 9 * cin * cout * side * side
        total += macs
        for first in binary:
            binary[first] += macs if i >= CONV_NAMES.index(first) else 0
    assert {first: round(100 * macs / total) for first, macs in binary.items()} == {"conv3_2": 61, "conv4_2": 29}
    readme = (REPO / "README.md").read_text()
    assert "binary from conv3_2 on (61 % of the multiply-accumulates)" in readme and "conv4_2 on (29 %)" in readme
