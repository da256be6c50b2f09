"""Named thresholds of the doctor rules, each with the reasoning behind its value.

Every rule module reads its limits from here, so the numbers live in one place.
"""

# Softmax (CLIP) temperature: CLIP starts at 0.07 and clamps at 0.01 (scale 100). Above
# ~0.5 the logits span < 4 nats for cosines in [-1, 1], so the softmax stays near uniform
# and the loss cannot leave log(B).
TAU_MIN, TAU_MAX = 0.01, 0.5
# SigLIP scale t: below 1 a positive's logit differs from a negative's by < 2 nats.
SIGLIP_T_MIN = 1.0
# SigLIP bias: its equilibrium is near the log prior odds of a positive, ~log(1/B);
# farther than this (nats) and nearly every pair is pushed to one side at the start.
SIGLIP_BIAS_TOLERANCE = 5.0
CLAMP_FRACTION = 0.99  # "at the clamp" = scale >= 99% of max_logit_scale
CLAMP_SHARE = 0.5  # ... for at least half of the records
TOWARD_ONE_DROP = 0.5  # scale fell below half its start ...
TOWARD_ONE_MAX = 5.0  # ... and below 5 (tau > 0.2)
CHANCE_RATIO = 0.95  # softmax loss >= 95% of log(B) at the end = chance (tau=10 gives ~log B - 0.1)
MIN_DECREASE = 0.02  # relative loss decrease below 2% over the run = not decreasing
MIN_RECORDS = 4  # trend rules need this many records
GAP_MIN_PEAK = 0.05  # a gap must have reached 0.05 before "shrinking" means anything
GAP_DROP = 0.5  # ... and lost half of its peak
AUX_SHARE = 0.5  # an auxiliary term above half of the weighted loss ...
CONTRASTIVE_SHARE = 0.3  # ... while the objectives hold less than 30% = domination
# PCGrad (Yu et al. 2020) calls gradients conflicting when their cosine is negative; we
# require a mean below -0.1 over the records so noise around 0 does not fire. Cosines
# near 0 are not flagged: unrelated objectives are nearly orthogonal in high dimension.
INTERFERENCE_COSINE = -0.1
# Two *contrastive* heads on one shared tower that pursue the same alignment agree
# strongly (cosine well above 0.3: both pull matching pairs together). Below that, the
# tower is being pulled toward two different targets and most of each head's update is
# noise for the other -- the "two heads pull one text tower two ways" failure.
SHARED_HEADS_COSINE = 0.3
# An opposing auxiliary term matters only when it carries a material part of the gradient
# on the shared parameters; below 10% it cannot undo the contrastive update.
MATERIAL_GRAD_SHARE = 0.1
COLLAPSE_STD_RATIO = 0.1  # std * sqrt(D) below 0.1 (1 = spread over the sphere)
COLLAPSE_RANK_SHARE = 0.02  # effective rank below 2% of the dimension (and below 2)
RIGID_PARAM_DRIFT = 1e-3  # backbone weights moved < 0.1% (relative L2) ...
RIGID_EMBED_DRIFT = 0.01  # ... and probe embeddings < 1% (1 - cosine) ...
RIGID_LOSS_DECREASE = 0.05  # ... while a term's loss fell < 5%
LR_ZERO = 1e-9  # an AdamW step moves a weight by ~lr: below 1e-9 nothing changes in float32
# Negatives per query (monitors/negatives.py). InfoNCE bounds the mutual information it
# can certify by ln(B) (van den Oord et al. 2018): ln 32 = 3.5 nats. A batch of 32 rows,
# the smallest of common contrastive recipes, keeps >= 28 negatives per query when a few
# rows share a group (digits-captions, 5 captions per image, random batch of 32: 30.7 on
# average, 30 at least; a groups sampler of 8 x 4: 28). Fewer means a small batch, not a
# shared one: the batch of 4 (3 negatives) ended at test R@1 0.71-0.77 where 128
# reaches 0.91-0.96.
MIN_NEGATIVES = 28
# The batch the fix aims for: >= 256 rows (255 negatives, ln 256 = 5.5 nats), reachable on
# any memory through cached accumulation. Naive accumulation below it is a warning.
TARGET_CONTRASTIVE_BATCH = 256
# Update-to-weight ratio ||dw|| / ||w|| per optimizer step (monitors/updates.py). AdamW
# moves each weight by about lr per step, so the ratio is ~lr / rms(w); healthy runs sit
# around 1e-4..1e-2 (CS231n, "Neural Networks Part 3": ~1e-3). Measured on the tiny digits
# run (bench/recipes.py BASE) at the schedule's peak: lr 2e-3 -> 1.6e-3..1.5e-2 per module,
# lr 1e-6 -> 8e-7..7.5e-6, lr 1e-7 -> 8e-8..7.5e-7.
UPDATE_RATIO_HEALTHY = (1e-4, 1e-2)
UPDATE_RATIO_TARGET = 1e-3  # what the lr fix aims for (the middle of the healthy range)
# lr far too small: every trainable module below 1e-6 per step, 100x under the healthy
# floor: in 10,000 steps the weights could move 1% at most even if every step agreed.
LR_TOO_SMALL_RATIO = 1e-6
# lr far too large: a module rewritten by more than 10% of its norm per step (10x over the
# healthy ceiling) on at least two records near the schedule's peak (not one noisy step).
# Counted, not a median: an exploding lr inflates the weights, and the ratio then shrinks
# with the grown norm (tiny digits run at lr 5: 38 and 0.25 at steps 0 and 2, then 0.03-0.07).
LR_TOO_LARGE_RATIO = 0.1
LR_TOO_LARGE_RECORDS = 2
# Which records judge the lr: those where the scheduled lr is at least half its peak
# (warm-up and the tail of a cosine decay move little by design).
PEAK_LR_SHARE = 0.5
