"""Built-in loss variants: each is a base method with one documented point change.

| variant | change | expected behaviour |
|---|---|---|
| ``vicreg_novar`` | ``var_coeff = 0``: ``L = 25 inv + 1 cov`` | complete collapse: invariance is minimised by a constant and nothing keeps the std up (Bardes et al. 2022, table 5) |
| ``vicreg_nocov`` | ``cov_coeff = 0``: ``L = 25 inv + 25 var`` | dimensional collapse: every dimension keeps std >= 1 but they become correlated, so RankMe drops far below D |
| ``simsiam_nosg`` | no stop-gradient: ``0.5 (D(p1, z2) + D(p2, z1))`` with gradients through ``z`` | complete collapse within the first epoch (Chen & He 2021, fig. 2) |
| ``byol_noema`` | ``tau = 0``: the target is the online network | weaker or collapsed; BYOL's table 5 reports tau = 0 at 0.3% top-1 |
| ``barlow_twins_lambda05`` | ``lambda = 0.05`` (about 10x) | redundancy term dominates; Zbontar et al. fig. 4 shows accuracy falls off for large lambda |
"""

from baselines.barlow_twins import BARLOW_TWINS
from baselines.byol import BYOL
from baselines.simsiam import SIMSIAM
from baselines.vicreg import VICREG
from sslbench.method import derive_variant

VICREG_NOVAR = derive_variant(VICREG, "vicreg_novar", "VICReg without the variance term (collapses)", loss={"var_coeff": 0.0})
VICREG_NOCOV = derive_variant(VICREG, "vicreg_nocov", "VICReg without the covariance term (dimensional collapse)",
                              loss={"cov_coeff": 0.0})
SIMSIAM_NOSG = derive_variant(SIMSIAM, "simsiam_nosg", "SimSiam without stop-gradient (collapses)",
                              loss={"stop_gradient": False})
BYOL_NOEMA = derive_variant(BYOL, "byol_noema", "BYOL with tau = 0: the target is the online network",
                            target={"tau_base": 0.0, "tau_final": 0.0})
BARLOW_TWINS_LAMBDA05 = derive_variant(BARLOW_TWINS, "barlow_twins_lambda05", "Barlow Twins with lambda = 0.05 (about 10x)",
                                       loss={"lambd": 0.05})
