"""LSTM cell variants, one module per variant, all written through one pointwise cell interface."""
