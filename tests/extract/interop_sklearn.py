"""Loads two aefx extractions (train and test) with NumPy and classifies them with scikit-learn's
LogisticRegression; prints the test accuracy. Used by the extract tests:
    /usr/bin/python3 tests/extract/interop_sklearn.py TRAIN_DIR TEST_DIR
"""
import csv
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def load(folder):
    features = np.load(folder + "/features.npy", mmap_mode="r")
    with open(folder + "/index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["row"]) for r in rows] == list(range(len(features))), "index and rows differ"
    return np.asarray(features, dtype=np.float64), [r["label"] for r in rows]


x_train, y_train = load(sys.argv[1])
x_test, y_test = load(sys.argv[2])
scaler = StandardScaler().fit(x_train)
clf = LogisticRegression(max_iter=2000).fit(scaler.transform(x_train), y_train)
print(f"sklearn_accuracy {clf.score(scaler.transform(x_test), y_test):.4f}")
