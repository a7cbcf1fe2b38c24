"""Training: tokenizer training, corpora, masking collators, pretraining, fine-tuning, events.

Knows nothing about widgets: loops emit events to callbacks (see `training.events`).
"""
