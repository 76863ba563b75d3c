"""Contract suites for protocols and methods, synthetic features, and a regression assert for pytest.

In the spirit of scikit-learn's ``check_estimator``: sslbench runs these checks
on every registered protocol and method, and a plugin author runs them on theirs::

    from sslbench.testing import check_method, check_protocol

    def test_my_protocol_keeps_the_contract():
        check_protocol(MyProtocol)

    def test_my_method_keeps_the_contract():
        check_method(MY_METHOD, presets=("smoke",))
"""

from sslbench.testing.method_contract import check_loss_decreases, check_method, check_method_attributes, check_step
from sslbench.testing.protocol_contract import (
    ATOL,
    check_class_attributes,
    check_deterministic,
    check_label_independence,
    check_meta,
    check_order_invariance,
    check_params,
    check_protocol,
    check_result,
)
from sslbench.testing.regression import assert_no_regression
from sslbench.testing.synthetic import make_features, permute_rows, shuffle_labels

__all__ = [
    "ATOL",
    "assert_no_regression",
    "check_class_attributes",
    "check_deterministic",
    "check_label_independence",
    "check_loss_decreases",
    "check_meta",
    "check_method",
    "check_method_attributes",
    "check_order_invariance",
    "check_params",
    "check_protocol",
    "check_result",
    "check_step",
    "make_features",
    "permute_rows",
    "shuffle_labels",
]
