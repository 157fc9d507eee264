#!/usr/bin/env python
"""Train, evaluate or predict with lit-effnet.

python train.py --config quickstart
python train.py --config v2_l.yaml --devices 8
python train.py test --config quickstart --ckpt_path last
python train.py --help
"""

import sys

from lit_effnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
