"""Paired per-image PSNR difference of exit 8, light head minus full head (docs/light_head.md).

    python docs/scripts/light_head_differences.py   # writes docs/light_head/differences.json and prints it
"""
import json
from os import path as osp

from srdistill.ablation.stats import paired_difference

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), '..', 'light_head', 'light_head_cpu_x4', 'results')
light = [json.load(open(osp.join(ROOT, 'light_head__s0__iterations.json')))]
full = [json.load(open(osp.join(ROOT, 'full_head__s0__iterations.json')))]
diffs = {ds: paired_difference(light, full, ds, 'last') for ds in ('291_val', 'Set5', 'Set14', 'BSD100')}
with open(osp.join(ROOT, '..', '..', 'differences.json'), 'w') as f:
    json.dump(dict(compared='light_head - full_head, exit 8, last checkpoint (1000 iterations), seed 0', sets=diffs),
              f, indent=1)
for ds, d in diffs.items():
    print(f"{ds}: {d['mean']:+.3f} dB, 95% CI over {d['images']} images [{d['ci_images'][0]:+.3f}, "
          f"{d['ci_images'][1]:+.3f}]")
