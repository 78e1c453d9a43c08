"""Metadata lives in setup.cfg; this file only ships espnet_iml-autoload.pth.

The .pth file makes every Python start-up in the environment install our (lazy) encoder
registration hook, so that ESPnet's own entry points (python -m espnet2.bin.asr_train,
ESPnet's asr.sh) accept ``encoder: iml_spikeformer`` without going through ours.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "espnet_iml-autoload.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
