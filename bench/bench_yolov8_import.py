"""Does a real YOLOv8 state_dict load into our Detector and compute the same thing? (issue 21, item 1)

NOT RUN YET: it needs Ultralytics in its own virtual environment, which the session that wrote it did not
install. Setup (the peer never enters our environment; no weights are downloaded: the model is built from its
yaml with random initialisation):

    python -m venv /tmp/ultra && /tmp/ultra/bin/pip install ultralytics
    python bench/bench_yolov8_import.py --peer-python /tmp/ultra/bin/python [--scale n] [--imgsz 256]

The peer process builds `yolov8{scale}.yaml` (80 classes), gives every BatchNorm random running statistics (so
the buffers' mapping is tested too), saves `{'state_dict': ..., 'names': ...}` exactly as the README's export
does, plus a random input and its raw per-level head outputs in eval mode. This process loads the file with
`trainer.finetune.load_source` (weights_only=True, the mapping of trainer/model/yolov8_layout.py), runs our model
in eval mode on the same input and prints the largest absolute difference per level and of the decoded boxes and
scores. Target: under 1e-4 everywhere.
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
    model.eval()
    images = torch.rand(2, 3, imgsz, imgsz)
    with torch.no_grad():
        decoded, raw = model(images)
    names = {i: f"class{i}" for i in range(80)}
    torch.save({"state_dict": model.state_dict(), "names": names}, out + "/state.pt")
    torch.save({"images": images, "raw": [r.clone() for r in raw], "decoded": decoded}, out + "/outputs.pt")
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
        decoded = model.head.decode(raw)
    rows = [(f"raw level P{3 + level}", (ours - theirs).abs().max().item())
            for level, (ours, theirs) in enumerate(zip(raw, expected["raw"], strict=True))]
    rows.append(("decoded boxes + scores", (decoded - expected["decoded"]).abs().max().item()))
    print(f"| yolov8{args.scale} ({kind}, {len(names)} classes, imgsz {args.imgsz}) | max abs difference |")
    print("|---|---|")
    for name, difference in rows:
        print(f"| {name} | {difference:.2e} |")
    worst = max(difference for _, difference in rows)
    print(f"\n{'PASS' if worst < 1e-4 else 'FAIL'}: largest difference {worst:.2e} (target < 1e-4)")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
