from setuptools import find_packages, setup

setup(
    name='mmseg_ext',
    version='0.1.0',
    description='SANet, SSANet and GFFNet decode heads for MMSegmentation 1.x',
    packages=find_packages(include=['mmseg_ext', 'mmseg_ext.*']),
    python_requires='>=3.9',
    # The OpenMMLab stack is pinned in requirements.txt and installed by tools/install.sh
    # (mmcv needs a source build for torch 2.14); nothing is re-resolved here.
    install_requires=[],
    zip_safe=False,
)
