"""The smallest real digits run (a few seconds): for tests that start `contrastkit train`
in subprocesses, where every second of a run is paid several times."""

TINY = """
name: tiny
data:
  manifest: builtin:digits-captions
  max_rows: 60
  batch_size: 20
  image: {size: 8, channels: 1}
model:
  embed_dim: 8
  tokenizer: {type: builtin, vocab_size: 60, max_length: 12}
  towers:
    image: {streams: {image: {type: cnn, width: 8}}}
    text: {streams: {text: {type: builtin_text, width: 8, depth: 1, heads: 1}}}
loss:
  objectives:
    - {name: contrastive, type: clip, towers: [image, text], temperature: 0.07}
train: {epochs: 2, lr: 0.002, log_every: 1, progress: none, device: cpu,
        loggers: {tensorboard: false}}
eval: {splits: [val]}
doctor: {enabled: false}
"""
