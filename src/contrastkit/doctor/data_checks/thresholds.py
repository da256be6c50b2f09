"""Named limits of the data checks: how many example rows a finding cites, the share of
affected rows that makes a finding a warning or an error, and the limits of the input
signal and truncation checks (each with the reason for its value)."""

MAX_EXAMPLES = 5
ERROR_SHARE = 0.10  # duplicate groups touching >= 10% of rows make the run unlearnable
WARN_SHARE = 0.01  # below 1% of rows, a few coincidences (real data has some) are info only
MAX_EMBED_TEXTS = 20000  # cap for the optional embedding near-duplicate search

# --- input signal (signal.py): measured on a seeded sample of each split ---------------
SIGNAL_SEED = 0  # the sample is the same on every call, so findings are reproducible
SIGNAL_ROWS_PER_SPLIT = 256  # reading 256 items costs well under a second on small media
# An item whose standard deviation is below 1% of its value range (2.55 grey levels of
# 255) shows the model little more than quantisation and sensor noise: near-black,
# near-white, or blank frames. Healthy photos and the shipped digits sit at 15-40%.
LOW_SIGNAL_STD = 0.01
# Share of sampled items that carry no signal (or are mis-scaled) before it is reported:
# a few blank frames are common in real data (below 5% is silence); when at least half
# the items carry none, most of each batch cannot be told apart and the contrastive loss
# stays near chance, so the run cannot learn (error).
INPUT_WARN_SHARE = 0.05
INPUT_ERROR_SHARE = 0.5
# Integer pixels whose maximum is at most 1 use 1/255 of an 8-bit range: the values were
# divided by 255 (or were a 0/1 mask) before being saved as integers.
INTEGER_MAX_AS_UNIT = 1
# Float pixels are read as [0, 1]; a float item whose maximum is at most 1/255 (with 1%
# slack for rounding) was divided by 255 twice. The limits outside [0, 1] are the
# loader's own (contrastkit.data.media.FLOAT_PIXEL_MIN / FLOAT_PIXEL_MAX).
FLOAT_TWICE_DIVIDED_MAX = 1.01 / 255

# --- text truncation (truncation.py) -----------------------------------------------------
TEXT_ROWS_PER_SPLIT = 4096  # tokenising 4k captions takes ~0.1 s; collisions need pairs
# Distinct texts of different groups that become one token sequence are identical inputs
# under different groups, as duplicate_groups: the same shares (ERROR_SHARE, WARN_SHARE)
# decide the severity. Truncation that makes no two texts alike loses only words; it is
# reported (info) when at least a quarter of the rows lose their ends.
TRUNCATED_INFO_SHARE = 0.25
TOKENISE_CHUNK = 512  # texts per tokenizer call (bounds the padded id matrix)
UNCUT_LENGTH = 1_000_000  # max_length that cuts nothing: the full token count of a text
