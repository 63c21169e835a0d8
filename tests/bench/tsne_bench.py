#!/usr/bin/python3
"""tsne_bench.py - helper of tsne_bench.sh (Debian python3-sklearn, python3-h5py).

  tsne_bench.py data OUT.h5 N D SEED            10 Gaussian blobs in D dims as /scores, /labels
  tsne_bench.py sklearn IN.h5 OUT.json OUT.npy PERPLEXITY ITERATIONS THETA
                                                 sklearn.manifold.TSNE(method='barnes_hut') with
                                                 the same settings as `stemdefect embed`
  tsne_bench.py kl IN.h5 PERPLEXITY EMB...       exact KL(P || Q) of each embedding (an .npy or
                                                 an embedding.h5) against one P (scikit-learn's
                                                 joint probabilities of the exact kNN graph) with
                                                 the exact normalisation Z (O(N^2), blocked)
Thread counts come from the environment (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS), set by the
caller before Python starts.
"""
import json
import sys
import time

import h5py
import numpy as np


def cmd_data(out, n, d, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d)) * 4.0
    lab = rng.integers(0, 10, n)
    x = (centres[lab] + rng.normal(size=(n, d))).astype(np.float32)
    with h5py.File(out, "w") as f:
        f["scores"] = x
        f["labels"] = lab.astype(np.int32)
        f["labels"].attrs["class_names"] = np.array([b"blob%d" % i for i in range(10)])


def cmd_sklearn(inp, out_json, out_npy, perplexity, iterations, theta):
    from sklearn.manifold import TSNE
    import sklearn
    with h5py.File(inp, "r") as f:
        x = f["scores"][:]
    n = x.shape[0]
    lr = max(n / 12.0 / 4.0, 50.0)
    kw = dict(n_components=2, perplexity=perplexity, early_exaggeration=12.0, learning_rate=lr,
              init="pca", method="barnes_hut", angle=theta, random_state=1, n_jobs=1)
    try:
        ts = TSNE(max_iter=iterations, **kw)
    except TypeError:  # scikit-learn < 1.5
        ts = TSNE(n_iter=iterations, **kw)
    w0, c0 = time.perf_counter(), time.process_time()
    y = ts.fit_transform(x)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    np.save(out_npy, y.astype(np.float64))
    with open(out_json, "w") as f:
        json.dump({"wall": wall, "cpu": cpu, "kl": float(ts.kl_divergence_),
                   "n_iter": int(getattr(ts, "n_iter_", iterations)), "version": sklearn.__version__}, f)


def exact_kl(p_csr, y):
    n = y.shape[0]
    sq = (y * y).sum(1)
    z = 0.0
    for a in range(0, n, 1024):
        b = min(n, a + 1024)
        d2 = sq[a:b, None] + sq[None, :] - 2.0 * y[a:b] @ y.T
        np.maximum(d2, 0.0, out=d2)
        z += (1.0 / (1.0 + d2)).sum() - (b - a)  # minus the diagonal (w_ii = 1)
    coo = p_csr.tocoo()
    d2 = ((y[coo.row] - y[coo.col]) ** 2).sum(1)
    p = coo.data
    return float((p * (np.log(p) + np.log1p(d2))).sum() + np.log(z) * p.sum())


def cmd_kl(inp, perplexity, embs):
    from sklearn.manifold._t_sne import _joint_probabilities_nn
    from sklearn.neighbors import NearestNeighbors
    with h5py.File(inp, "r") as f:
        x = f["scores"][:].astype(np.float64)
    n = x.shape[0]
    k = min(n - 1, int(3.0 * perplexity + 1))
    nn = NearestNeighbors(n_neighbors=k, metric="euclidean").fit(x)
    dist = nn.kneighbors_graph(mode="distance")
    dist.data **= 2
    p = _joint_probabilities_nn(dist, perplexity, 0)
    for e in embs:
        if e.endswith(".npy"):
            y = np.load(e)
        else:
            with h5py.File(e, "r") as f:
                y = f["embedding"][:].astype(np.float64)
        print("%s %.6f" % (e, exact_kl(p, y)))


if __name__ == "__main__":
    c = sys.argv[1]
    if c == "data":
        cmd_data(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif c == "sklearn":
        cmd_sklearn(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6]),
                    float(sys.argv[7]))
    elif c == "kl":
        cmd_kl(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit("tsne_bench.py: unknown command " + c)
