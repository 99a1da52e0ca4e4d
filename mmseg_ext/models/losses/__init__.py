from .categorical_loss import CategoricalLoss  # noqa: F401

__all__ = ['CategoricalLoss']
