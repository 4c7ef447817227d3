"""gemsight: jewelry recognition for store display cases (trainer, calibration, edge loop, deploy)."""
from glob import glob

from setuptools import find_packages, setup

CORE = [
    "numpy>=1.23",
    "pyzmq>=25",
    "pydantic>=2.5,<3",
    "PyYAML>=6",
    "prometheus-client>=0.17",
    # Consumers (listen, the kiosk) check every received message against edge/schemas/ before use.
    "jsonschema>=4.18",
]
EXTRAS = {
    # Jetson brings its own GStreamer-enabled OpenCV with JetPack: the PyPI wheel must stay optional.
    "cv": ["opencv-python-headless>=4.8"],
    "train": ["torch>=2.1", "torchvision>=0.16", "onnx>=1.15", "onnxscript>=0.1", "matplotlib>=3.7", "tqdm>=4.60"],
    "calibrate": ["onnx>=1.15", "onnxruntime>=1.17", "openvino>=2024.0"],
    "deploy": ["cryptography>=41"],
    # TensorRT itself comes with JetPack; pycuda is what we add.
    "jetson": ["pycuda>=2022.2", "cryptography>=41"],
    "dev": ["pytest>=7.4", "jsonschema>=4.18", "cryptography>=41", "onnxruntime>=1.17", "hypothesis>=6.80,<7",
            "selenium>=4.15,<5", "httpx>=0.25", "pytest-timeout>=2.1", "ruff>=0.5,<1"],
    # The store's kiosk (kiosk/): web page and API, argon2 logins, fast schema checks of the feed.
    "kiosk": ["starlette>=0.37,<2", "uvicorn>=0.27", "jinja2>=3.1", "python-multipart>=0.0.9", "itsdangerous>=2.1",
              "argon2-cffi>=23.1", "jsonschema-rs>=0.20", "paho-mqtt>=2,<3"],
    # The chain's headquarters (hq/): the kiosk's web stack, PostgreSQL and the MQTT broker.
    "hq": ["starlette>=0.37,<2", "uvicorn>=0.27", "jinja2>=3.1", "python-multipart>=0.0.9", "itsdangerous>=2.1",
           "argon2-cffi>=23.1", "paho-mqtt>=2,<3", "psycopg[binary]>=3.1"],
}
EXTRAS["all"] = sorted({req for name, reqs in EXTRAS.items() if name != "jetson" for req in reqs})

setup(
    name="gemsight",
    version="0.1.0",
    description=("Recognises jewelry in store display cases: trainer, INT8 calibration, edge camera loop, "
                 "signed deploy."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["edge", "edge.*", "trainer", "trainer.*", "calibration", "calibration.*",
                                    "deploy", "deploy.*", "kiosk", "kiosk.*", "hq", "hq.*"]),
    package_data={"edge": ["schemas/*.json", "defaults/*.yaml"], "kiosk": ["templates/*.html", "static/*"],
                  "hq": ["templates/*.html"]},
    # The unit files, for `gemsight-deploy install` on a device installed from a wheel.
    data_files=[("share/gemsight/systemd", sorted(glob("systemd/*")))],
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "gemsight-synth=trainer.synth.cli:main",
            "gemsight-train=trainer.cli:main",
            "gemsight-calibrate=calibration.cli:main",
            "gemsight-edge=edge.cli.main:main",
            "gemsight-deploy=deploy.cli:main",
            "gemsight-demo=deploy.demo:main",
            "gemsight-kiosk=kiosk.cli:main",
            "gemsight-hq=hq.cli:main",
        ]
    },
)
