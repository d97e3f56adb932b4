"""Record what rdcl computes, to prove that a refactor leaves behaviour unchanged (issue 19).

    python tools/behaviour_record.py OUT.json [--app RDCL_PREDICT] [--work DIR]
    python tools/behaviour_record.py --compare BEFORE.json AFTER.json

A record holds sha256 digests of
  (a) the weights (every tensor of every state dict) and the intensity statistics of the
      final.ckpt of short CPU training runs at fixed seeds on small synthetic data: 3D stage 1
      (--pretrain-only), 3D baseline, rdcl and backbone (both from that stage 1), and a 2D rdcl
      run that trains its own stage 1; every relation setting is passed with --set, so a later
      change of the defaults does not change the record;
  (b) the masks and probabilities of the eager Predictor (``rdcl predict`` and
      ``Predictor.predict_probabilities``) and of the exported TorchScript predictor
      (``rdcl export``; ``rdcl predict -m MODEL.ts`` and the file's ``probabilities``) on
      synthetic 2D/3D volumes (one at a spacing other than the training one) and on the real
      chest CT of ../shared/data/chest_ct (skipped with a note where absent);
  (c) the masks and probabilities of the C++ app ``rdcl_predict`` on the same 3D inputs (built
      from this tree into the work folder unless --app is given; a note where it cannot be).
An error a step raises is recorded as its value, so it is compared too. Everything runs on the
CPU with one thread (also kinder to a shared machine). ``info`` holds what may legitimately
change (the exported file's bytes, configs, versions, timings): --compare lists its differences
but fails (exit 1) only on ``digests``. About 3-4 minutes on one idle core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parents[1]
CHEST_CT = ROOT.parent / "shared" / "data" / "chest_ct" / "chest_ct.nii.gz"
FORMAT = "rdcl-behaviour-record/1"

# The relation settings at the time the tool was written (commit dd32de9), fixed here.
RELATION = [
    "train.lambda_g=0.001",
    "train.lambda_t=0.001",
    "train.relation_reduction=sum",
    "train.rampup_fraction=0.5",
    "train.rampup_steps=null",
    "train.general_anchor=0.01",
    "train.general_weight_decay=0.0",
]
SHORT = ["train.steps=6", "train.pretrain_steps=6", "train.checkpoint_every=100", "train.seed=0"]


def sha(*parts: bytes | str) -> str:
    """sha256 over the parts, each length-prefixed."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def array_digest(a) -> str:
    """Digest of a numpy array or tensor: dtype, shape and bytes."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().contiguous()
        return sha(str(a.dtype), str(tuple(a.shape)), a.view(torch.uint8).numpy().tobytes())
    a = np.ascontiguousarray(a)
    return sha(str(a.dtype), str(a.shape), a.tobytes())


def probability_difference(a, b) -> str:
    """``"identical"``, or how many voxels differ and by how much at most (shapes checked)."""
    import numpy as np

    if a.shape != b.shape or a.dtype != b.dtype:
        return f"shape/dtype differ: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    differ = a != b
    if not differ.any():
        return "identical"
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
    return f"{int(differ.sum())} of {a.size} voxels differ, at most {diff:.3g}"


class Recorder:
    def __init__(self, work: Path, app: Path | None) -> None:
        self.work, self.app = work, app
        self.digests: dict[str, str] = {}
        self.info: dict[str, object] = {"notes": [], "seconds": {}}

    def note(self, text: str) -> None:
        print("note:", text, flush=True)
        self.info["notes"].append(text)

    def rdcl(self, *args: str, key: str | None = None) -> None:
        """Run ``python -m rdcl ARGS``; a failure is fatal unless ``key`` records it."""
        t = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "rdcl", *args, "-q"], capture_output=True, text=True
        )
        out = [a for a, flag in zip(args[1:], args[:-1], strict=True) if flag in ("--out", "-o")]
        self.info["seconds"][" ".join([args[0], *out])] = round(time.perf_counter() - t, 1)
        if res.returncode != 0:
            line = (res.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            if key is None:
                sys.exit(f"rdcl {' '.join(args)} failed ({res.returncode}): {res.stderr[-2000:]}")
            self.digests[key] = f"error {res.returncode}: {line}"

    # (a) training
    def checkpoint(self, key: str, path: Path) -> None:
        import torch

        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        for name in ("model",):
            for tensor, value in ckpt[name].items():
                self.digests[f"{key}/{name}/{tensor}"] = array_digest(value)
        for field in ("kind", "stage", "step", "intensity", "dataset"):
            self.digests[f"{key}/{field}"] = sha(json.dumps(ckpt.get(field), sort_keys=True))
        self.info[f"{key}/config"] = ckpt.get("config")

    def train(self, name: str, data: Path, *extra: str, preset: str, general: Path | None) -> Path:
        out = self.work / "runs" / name
        args = ["train", "--data", str(data), "--out", str(out), "--preset", preset]
        args += ["--device", "cpu", *extra]
        if general is not None:
            args += ["--general", str(general)]
        for s in (*SHORT, *RELATION):
            args += ["--set", s]
        self.rdcl(*args)
        self.checkpoint(f"train/{name}", out / "final.ckpt")
        if (out / "pretrain" / "final.ckpt").is_file():
            self.checkpoint(f"train/{name}/pretrain", out / "pretrain" / "final.ckpt")
        return out

    # (b), (c) prediction
    def predict(self, tag: str, model: Path, ts: Path, image: Path) -> None:
        import numpy as np
        import torch

        from rdcl.data.io import read_image
        from rdcl.inference import Predictor

        arr, geometry = read_image(image)
        key = f"predict/{tag}/{image.name.split('.')[0]}"
        t = time.perf_counter()
        for kind, m in (("eager", model), ("exported", ts)):
            out = self.work / "masks" / f"{tag}-{kind}-{image.name}"
            self.rdcl(
                "predict",
                "-m",
                str(m),
                "-i",
                str(image),
                "-o",
                str(out),
                "--device",
                "cpu",
                key=f"{key}/{kind}/mask",
            )
            if out.is_file():
                self.digests[f"{key}/{kind}/mask"] = image_digest(out)
        prob = exported = None
        try:
            eager = Predictor.from_checkpoint(model, device="cpu")
            prob = eager.predict_probabilities(arr, geometry)
            self.digests[f"{key}/eager/probabilities"] = array_digest(prob)
        except Exception as exc:  # recorded: an error is behaviour too
            self.digests[f"{key}/eager/probabilities"] = f"error: {type(exc).__name__}: {exc}"
        try:
            module = torch.jit.load(str(ts), map_location="cpu")
            x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            sp = torch.tensor(geometry.spacing, dtype=torch.float64)
            with torch.no_grad():
                exported = module.probabilities(x, sp)
            # a tensor's digest names its dtype "torch.float32" and an array's "float32", so the
            # two digests above never match: equality is recorded here, voxel by voxel
            self.digests[f"{key}/exported/probabilities"] = array_digest(exported)
            if prob is not None:
                self.digests[f"{key}/exported/probabilities_vs_eager"] = probability_difference(
                    exported.numpy(), prob
                )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.digests[f"{key}/exported/probabilities"] = f"error: {type(exc).__name__}: {first}"
        if self.app is not None and image.name.endswith((".nii", ".nii.gz")):
            for flag in ("mask", "probabilities"):
                out = self.work / "masks" / f"{tag}-app-{flag}-{image.name}"
                cmd = [str(self.app), str(ts), str(image), str(out)]
                res = subprocess.run(
                    cmd + ["--probabilities"] * (flag != "mask"), capture_output=True, text=True
                )
                self.digests[f"{key}/app/{flag}"] = (
                    image_digest(out)
                    if res.returncode == 0
                    else f"error {res.returncode}: {res.stderr.strip()[-300:]}"
                )
        self.info["seconds"][key] = round(time.perf_counter() - t, 1)

    def export(self, tag: str, run: Path) -> Path:
        ts = self.work / "exported" / f"{tag}.ts"
        self.rdcl("export", "-m", str(run), "--out", str(ts), "--device", "cpu")
        self.info[f"export/{tag}/file_sha256"] = hashlib.sha256(ts.read_bytes()).hexdigest()
        import torch

        files = {"rdcl.json": "", "config.json": ""}
        torch.jit.load(str(ts), map_location="cpu", _extra_files=files)
        meta = files["rdcl.json"]
        self.info[f"export/{tag}/rdcl.json"] = meta.decode() if isinstance(meta, bytes) else meta
        return ts


def image_digest(path: Path) -> str:
    """Digest of an image file's voxels (dtype, shape, bytes) and geometry, read by SimpleITK."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    return sha(array_digest(arr), repr((img.GetSpacing(), img.GetOrigin(), img.GetDirection())))


def build_app(work: Path) -> Path | None:
    """Build rdcl_predict from this tree (as tests/app does) into ``work``; None when impossible."""
    cmake = shutil.which("cmake")
    if cmake is None:
        return None
    import torch

    build = work / "app_build"
    cfg = [
        cmake,
        "-S",
        str(ROOT),
        "-B",
        str(build),
        "-DRDCL_BUILD_PYTHON=OFF",
        "-DRDCL_BUILD_PREDICTOR=ON",
        "-DRDCL_CUDA=OFF",
        f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
    ]
    cfg += ["-GNinja"] if shutil.which("ninja") else []
    for cmd in (cfg, [cmake, "--build", str(build), "--target", "rdcl_predict", "-j1"]):
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            return None
    return build / "rdcl_predict"


def git_state() -> dict[str, object]:
    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return res.stdout.strip()

    dirty = git("status", "--porcelain", "--", "rdcl", "kernels", "csrc").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "dirty": dirty}


def record(out: Path, work: Path, app: Path | None) -> None:
    import numpy as np
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rec = Recorder(work, app)
    if app is None:
        rec.app = build_app(work)
        if rec.app is None:
            rec.note("the C++ app could not be built (cmake/compiler/libtorch): app masks skipped")
    data = work / "data"
    for sub in ("exported", "masks"):
        (work / sub).mkdir()
    synth = [
        ("covid3d", "covid", "3", ["--cases", "3", "--test", "1"]),
        ("tumour3d", "tumour", "3", ["--cases", "3"]),
        ("other3d", "covid", "3", ["--cases", "1", "--shape", "40,112,112", "--seed", "5"]),
        ("covid2d", "covid", "2", ["--cases", "4", "--test", "1"]),
        ("tumour2d", "tumour", "2", ["--cases", "4"]),
    ]
    for name, kind, dim, extra in synth:
        rec.rdcl("synth", "--out", str(data / name), "--kind", kind, "--dim", dim, *extra)

    stage1 = rec.train(
        "stage1_3d",
        data / "covid3d",
        "--pretrain-only",
        "--method",
        "rdcl",
        preset="tiny3d",
        general=data / "tumour3d",
    )
    pre = ["--pretrained", str(stage1 / "final.ckpt")]
    rec.train(
        "baseline_3d", data / "covid3d", "--method", "baseline", preset="tiny3d", general=None
    )
    rdcl3d = rec.train(
        "rdcl_3d",
        data / "covid3d",
        "--method",
        "rdcl",
        *pre,
        preset="tiny3d",
        general=data / "tumour3d",
    )
    rec.train(
        "backbone_3d",
        data / "covid3d",
        "--method",
        "backbone",
        *pre,
        preset="tiny3d",
        general=data / "tumour3d",
    )
    rdcl2d = rec.train(
        "rdcl_2d", data / "covid2d", "--method", "rdcl", preset="tiny2d", general=data / "tumour2d"
    )

    inputs3d = [
        *sorted((data / "covid3d" / "imagesTs").iterdir()),
        *sorted((data / "other3d" / "imagesTr").iterdir()),
    ]
    inputs2d = sorted((data / "covid2d" / "imagesTs").iterdir())
    if CHEST_CT.is_file():  # the whole real CT for the 3D model; a crop, slice by slice, for 2D
        img = sitk.ReadImage(str(CHEST_CT))
        crop = img[96:416, 64:448, 40:72]  # SimpleITK (x, y, z) order: 32 x 384 x 320 voxels
        real = work / "real" / "chest_ct_crop.nii.gz"
        real.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(crop, str(real))
        rec.info["real_input"] = f"{CHEST_CT}; 2D model: [x 96:416, y 64:448, z 40:72]"
        inputs3d.append(CHEST_CT)
        inputs2d.append(real)
    else:
        rec.note(f"{CHEST_CT} is absent: no real CT in the record")
    ts3d = rec.export("rdcl_3d", rdcl3d)
    for image in inputs3d:
        rec.predict("rdcl_3d", rdcl3d, ts3d, image)
    ts2d = rec.export("rdcl_2d", rdcl2d)
    for image in inputs2d:
        rec.predict("rdcl_2d", rdcl2d, ts2d, image)

    rec.info["versions"] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "SimpleITK": sitk.Version_VersionString(),
    }
    rec.info["app"] = str(rec.app) if rec.app else None
    import rdcl

    rec.info["rdcl"] = rdcl.__file__
    rec.info["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    doc = {"format": FORMAT, **git_state(), "digests": rec.digests, "info": rec.info}
    out.write_text(json.dumps(doc, indent=1, sort_keys=True, default=repr) + "\n")
    print(f"{out}: {len(rec.digests)} digests in {rec.info['seconds']['total']} s")


def compare(a_path: Path, b_path: Path) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    print(f"A: {a_path} at {a.get('commit')}\nB: {b_path} at {b.get('commit')}")
    bad = 0
    da, db = a["digests"], b["digests"]
    for key in sorted(set(da) | set(db)):
        if da.get(key) != db.get(key):
            bad += 1
            print(f"DIFFERS {key}:\n  A {da.get(key, '(absent)')}\n  B {db.get(key, '(absent)')}")
    ia, ib = a.get("info", {}), b.get("info", {})
    for key in sorted(set(ia) | set(ib)):
        if key not in ("seconds", "notes") and ia.get(key) != ib.get(key):
            print(f"info differs (not a failure): {key}")
    for side, doc in (("A", a), ("B", b)):
        for n in doc.get("info", {}).get("notes", []):
            print(f"note {side}: {n}")
    print(
        f"{len(da)} / {len(db)} digests; {bad} differ"
        if bad
        else f"{len(da)} digests, all identical"
    )
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", type=Path, help="the record to write (JSON)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    p.add_argument("--app", type=Path, help="a built rdcl_predict (default: build it)")
    p.add_argument("--work", type=Path, help="keep the work files here (default: a temp folder)")
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        p.error("give OUT.json or --compare A B")
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=False)
        record(args.out, args.work, args.app)
    else:
        with tempfile.TemporaryDirectory(prefix="rdcl-behaviour-") as tmp:
            record(args.out, Path(tmp), args.app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
