"""cifar10-prune: ISTA channel pruning of Ye et al. (ICLR 2018), ported to TensorFlow 2 / Keras 3."""
from setuptools import setup

setup(
    name="cifar10-prune",
    version="0.1.0",
    description="Channel pruning by ISTA on batch-norm gammas (Ye et al., ICLR 2018) for "
                "TensorFlow 2 / Keras 3, with the original CIFAR-10 recipe",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # The absl flag definitions live in flags/ at the top of the tree and install as
    # cifar10_prune.flags, so they do not claim the generic top-level name "flags".
    packages=["cifar10_prune", "cifar10_prune.pruning", "cifar10_prune.flags"],
    package_dir={"cifar10_prune": "cifar10_prune", "cifar10_prune.flags": "flags"},
    install_requires=["tensorflow>=2.16", "tensorflow-datasets", "numpy", "absl-py"],
    # litert: LiteRT's interpreter for the exported model.tflite, used instead of the deprecated
    # tf.lite.Interpreter when installed (optional; conversion needs only TensorFlow).
    # backends: JAX and PyTorch (CPU builds), for the library on every Keras 3 backend
    # (tests/test_backends.py); torch pinned to the build these machines hold on disk, since
    # any other version downloads several GB.
    extras_require={"test": ["pytest", "pytest-xdist"], "litert": ["ai-edge-litert"],
                    "backends": ["jax", "torch==2.13.0"]},
    entry_points={"console_scripts": [
        "cifar10_train=cifar10_prune.train:run",
        "cifar10_eval=cifar10_prune.eval:run",
        "cifar10_export=cifar10_prune.export:run",
    ]},
)
