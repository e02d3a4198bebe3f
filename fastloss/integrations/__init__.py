"""fastloss as the loss of other trainers: XGBoost, LightGBM, PyTorch and scikit-learn.

Each module imports its library on import, and needs the matching extra
(``fastloss[xgboost]``, ``fastloss[lightgbm]``, ``fastloss[torch]``,
``fastloss[sklearn]``).
"""
