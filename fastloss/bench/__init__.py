"""``fastloss bench``: fastloss against NumPy, PyTorch and scikit-learn on this machine.

Everything is measured side by side in one run: the memory bandwidth the
machine delivers (``bandwidth``), each loss's throughput next to its peers
(``throughput``), and the start-up costs (``startup``).
"""
