"""The core: parameters, the forward equations, the hand-written backward and the sequence machinery.

Nothing here imports from the rest of jlstm; everything else is built on it.
"""
