#!/bin/bash
# Records the eval reports tests/data/eval/ holds: a tiny run report and a tiny two-variant ablation on the small test store
# Run it in an empty directory, then copy run-report/report.{json,md} and ablation/report.{json,md} here.
set -e
M=meqg  # the installed console script
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
$M data build --source stdlib:json,heapq,bisect,textwrap,string,functools,fractions,statistics,shlex,difflib --store small
cat > tiny.yaml <<'Y'
vmm: {d_model: 64, n_layers: 2, d_state: 16, head_dim: 32, chunk_size: 16, n_experts: 4, d_ff: 128, rvq_levels: 2, rvq_codes: 16}
train: {steps: 40, batch_size: 8, seq_len: 16, learning_rate: 0.003, warmup_steps: 5, rvq_fit_steps: 10, eval_every: 20, checkpoint_every: 20}
Y
$M train --run runs/tiny --store small --config tiny.yaml
$M eval --run runs/tiny --out run-report --tool-budgets ''
$M eval --store small --out ablation --variants full,plain --seeds 2 --steps 40 --config tiny.yaml --tool-budgets ''
