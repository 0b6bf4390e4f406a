"""Tools that turn trained networks into publishable results: complexity tables, plots, visual
comparisons, a model-zoo table and image inference. Each module is behind a thin script in scripts/
(or srkit/infer.py); none is imported by training or testing.
"""
