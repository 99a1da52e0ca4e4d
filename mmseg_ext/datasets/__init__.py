from .synthcity_dataset import SynthCityDataset

__all__ = ['SynthCityDataset']
