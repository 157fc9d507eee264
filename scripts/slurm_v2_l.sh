#!/bin/bash
# EfficientNetV2-L on ImageNet over N nodes x 8 GPUs with SLURM; requeues itself before the time limit.
#
#   sbatch --nodes=4 scripts/slurm_v2_l.sh                 # 32 GPUs
#   sbatch --nodes=4 scripts/slurm_v2_l.sh --data.batch_size 32   # extra arguments go to train.py
#
# Lightning reads SLURM's variables (one task per GPU) and sets the ranks; --num_nodes must match.
# SIGUSR1 two minutes before the limit: Lightning saves hpc_ckpt_N.ckpt under checkpoints/v2_l/ and
# requeues the job, which resumes from it. scancel / pre-emption (SIGTERM) writes last.ckpt instead;
# --ckpt_path auto then continues from the newest last.ckpt (or starts fresh on the first run).
#SBATCH --job-name=v2_l
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=checkpoints/slurm-v2_l-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
source .venv/bin/activate
export NO_ALBUMENTATIONS_UPDATE=1
srun python train.py --config v2_l.yaml --devices 8 --num_nodes "$SLURM_JOB_NUM_NODES" \
    --data.num_workers 8 --ckpt_path auto "$@"
