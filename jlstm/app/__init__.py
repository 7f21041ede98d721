"""The application: the ``jlstm`` command line, the demo, the worked example, gradient flow, the
training tasks and runner, benchmarks and parity. It imports the library; the library never imports it.
"""
