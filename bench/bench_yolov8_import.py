"""Does a real YOLOv8 state_dict load into our Detector and compute the same thing? (issue 21, item 1)

The peer (Ultralytics 8.4.190, AGPL-3.0) runs as a separate program in its own virtual environment, set up as
bench/bench_train.py's docstring says (its own torch 2.14.1 + torchvision 0.29.1, our NumPy / OpenCV through a
.pth file; nothing is installed into this project's environment; no weights are downloaded: the model is built
from its yaml with random initialisation):

    python -m venv /tmp/ultra && echo "$PWD/.venv/lib/python3.11/site-packages" \\
        > /tmp/ultra/lib/python3.11/site-packages/project.pth
    /tmp/ultra/bin/pip install --no-deps ultralytics==8.4.190 ultralytics-thop
    /tmp/ultra/bin/pip install torch==2.14.1 torchvision==0.29.1 pillow psutil requests polars matplotlib
    PYTHONPATH=. python bench/bench_yolov8_import.py --peer-python /tmp/ultra/bin/python [--scale n] [--imgsz 256]

The peer process builds `yolov8{scale}.yaml` (80 classes), gives every BatchNorm random running statistics (so
the buffers' mapping is tested too) and the class biases random values (so the scores span (0, 1) instead of
the tiny prior), saves `{'state_dict': ..., 'names': ...}` exactly as the README's export does, plus a random
input, its decoded eval-mode output and its raw per-level head maps (recomputed from Detect's inputs as
cat(box branch, class branch), so the comparison does not depend on how a release packs its training output).
This process loads the file with `trainer.finetune.load_source` (weights_only=True, the mapping of
trainer/model/yolov8_layout.py), runs our model in eval mode on the same input and prints the largest absolute
difference per level, of the class scores and of the decoded boxes. Target: under 1e-4 (boxes, which are in
input pixels, relative to their magnitude).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEER_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from ultralytics.nn.tasks import DetectionModel

    scale, imgsz, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    model = DetectionModel(f"yolov8{scale}.yaml", nc=80, verbose=False)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        for branch in model.model[-1].cv3:  # class biases off their tiny prior, so the scores span (0, 1)
            branch[-1].bias.normal_(0, 2)
    model.eval()
    images = torch.rand(2, 3, imgsz, imgsz)
    detect = model.model[-1]
    features = []  # Detect's inputs; its raw per-level maps are recomputed from them as cat(box, class) below,
    # so the comparison does not depend on how a release packs its training output (list or dict)
    detect.register_forward_pre_hook(lambda module, inputs: features.append([f.clone() for f in inputs[0]]))
    with torch.no_grad():
        output = model(images)
        decoded = output[0] if isinstance(output, (tuple, list)) else output
        raw = [torch.cat((detect.cv2[i](x), detect.cv3[i](x)), 1) for i, x in enumerate(features[-1])]
    names = {i: f"class{i}" for i in range(80)}
    torch.save({"state_dict": model.state_dict(), "names": names}, out + "/state.pt")
    torch.save({"images": images, "raw": raw, "decoded": decoded}, out + "/outputs.pt")
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", required=True, help="python of a venv with ultralytics installed")
    parser.add_argument("--scale", default="n", choices=list("nsmlx"))
    parser.add_argument("--imgsz", type=int, default=256)
    args = parser.parse_args()

    from trainer.finetune import load_source

    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "peer.py"
        script.write_text(PEER_SCRIPT)
        subprocess.run([args.peer_python, str(script), args.scale, str(args.imgsz), folder], check=True)
        model, names, kind = load_source(Path(folder) / "state.pt")
        expected = torch.load(Path(folder) / "outputs.pt", weights_only=True)
    model.eval()
    with torch.no_grad():
        raw = model.head(model.neck(*model.backbone(expected["images"])))
        decoded = model(expected["images"])  # the whole eval-mode forward, decoding included
    theirs = expected["decoded"]
    # (what, our tensor, theirs, the limit): raw maps and class scores absolute; decoded boxes are in input pixels
    # (up to imgsz), where float32 spacing alone is ~imgsz * 1.2e-7, so they are held to 1e-4 of their magnitude
    rows = [(f"raw level P{3 + level} (box + class logits)", ours, ref, 1e-4)
            for level, (ours, ref) in enumerate(zip(raw, expected["raw"], strict=True))]
    rows.append(("decoded class scores", decoded[:, 4:], theirs[:, 4:], 1e-4))
    boxes_limit = 1e-4 * max(1.0, theirs[:, :4].abs().max().item())
    rows.append(("decoded boxes cx, cy, w, h (px)", decoded[:, :4], theirs[:, :4], boxes_limit))
    print(f"| yolov8{args.scale} ({kind}, {len(names)} classes, imgsz {args.imgsz}) | max abs difference "
          f"| largest abs value | limit |")
    print("|---|---|---|---|")
    failed = []
    for name, ours, ref, limit in rows:
        difference = (ours - ref).abs().max().item()
        print(f"| {name} | {difference:.2e} | {ref.abs().max().item():.3g} | {limit:.2g} |")
        if not difference < limit:
            failed.append(name)
    print(f"\n{'FAIL: ' + ', '.join(failed) if failed else 'PASS'} (limits: 1e-4 absolute; boxes 1e-4 relative)")
    sys.exit(1 if failed else 0)

if __name__ == "__main__":
    main()
