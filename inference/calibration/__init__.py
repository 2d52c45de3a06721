"""Calibration maths: the methods that map an ensemble's raw score to a calibrated probability
(temperature, Platt), the checked record of a fit, and the simulation behind the smallest labelled
set a fit takes."""
