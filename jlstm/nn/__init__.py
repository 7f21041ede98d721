"""Framework layers (Flax NNX, Flax linen, Equinox, Keras 3), one module per framework, each importing
only its own framework."""
