"""Task modules: what a task needs beyond sequence classification (its data, label alignment, model class, metrics
and card entry), each imported only by the recipe that runs it. Strategies, loss components, the trainer, selection
and the Hub code stay task-agnostic.
"""
