"""numpy in the project: OpenBLAS's thread pool runs in every warm process."""

import numpy as np

GAIN = 2.0


def scaled(values):
    return (np.asarray(values, dtype=float) * GAIN).tolist()
