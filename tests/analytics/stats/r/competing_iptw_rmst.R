# Reference values for tests/analytics/stats/test_competing.py, test_weighting.py and
# test_rmst.py, computed with R's survival and cmprsk packages on survival's public data sets.
# Run from this folder's parent (tests/analytics/stats):
#   Rscript r/competing_iptw_rmst.R
# It writes the data it used into data/*.csv and the values into r/reference.json, so the
# tests run without R. (jsonlite is not installed here: a small writer below.)
suppressPackageStartupMessages({library(survival); library(cmprsk)})
options(warn = 1)

json <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    if (!is.null(names(x)))
      return(paste0("{", paste(sprintf('"%s": %s', names(x), vapply(x, json, "")), collapse = ", "), "}"))
    return(paste0("[", paste(vapply(x, json, ""), collapse = ", "), "]"))
  }
  values <- if (is.character(x)) sprintf('"%s"', x)
    else if (is.logical(x)) ifelse(is.na(x), "null", ifelse(x, "true", "false"))
    else ifelse(is.finite(x), sprintf("%.15g", x), "null")
  if (inherits(x, "AsIs") || length(x) != 1) paste0("[", paste(values, collapse = ", "), "]") else values
}
arr <- function(x) I(as.vector(x))

# ---- competing risks data -------------------------------------------------------------------
# mgus2 as in survival's "compete" vignette: progression to a plasma cell malignancy (cause 1)
# before death (cause 2), time in months.
mg <- data.frame(time = ifelse(mgus2$pstat == 0, mgus2$futime, mgus2$ptime),
                 cause = ifelse(mgus2$pstat == 0, 2 * mgus2$death, 1),
                 male = as.integer(mgus2$sex == "M"), age = mgus2$age)
write.csv(mg, "data/mgus2.csv", row.names = FALSE)
# pbc, randomised patients: transplant (1) and death (2), time in days; arm trt 1/2.
pb <- pbc[!is.na(pbc$trt), c("time", "status", "trt", "age")]
pb$trt2 <- as.integer(pb$trt == 2)
write.csv(pb[, c("time", "status", "trt2", "age")], "data/pbc.csv", row.names = FALSE)

cif_block <- function(time, cause, group, times, failcode = 1) {
  fit <- cuminc(time, cause, group)
  out <- list()
  for (g in sort(unique(group))) {
    curve <- fit[[paste(g, failcode)]]
    tp <- timepoints(fit[paste(g, failcode)], times)
    # the curve's steps: the value after each jump (every second point from the third on)
    k <- if (length(curve$time) >= 4) seq(3, length(curve$time) - 1, by = 2) else integer(0)
    spread <- qnorm(0.975) * sqrt(tp$var) / (tp$est * log(tp$est))
    lower <- pmin(tp$est^exp(spread), tp$est^exp(-spread))
    upper <- pmax(tp$est^exp(spread), tp$est^exp(-spread))
    out[[as.character(g)]] <- list(times = arr(times), est = arr(tp$est), var = arr(tp$var),
                                   lower = arr(lower), upper = arr(upper),
                                   step_time = arr(curve$time[k]), step_est = arr(curve$est[k]),
                                   step_var = arr(curve$var[k]))
  }
  if (!is.null(fit$Tests)) {
    row <- fit$Tests[as.character(failcode), ]
    out$gray <- list(stat = row[["stat"]], p = row[["pv"]], df = row[["df"]])
  }
  out
}
crr_block <- function(time, cause, cov, failcode = 1) {
  fit <- crr(time, cause, cov, failcode = failcode)
  s <- summary(fit)
  list(coef = arr(fit$coef), se = arr(sqrt(diag(fit$var))), p = arr(2 * pnorm(-abs(fit$coef / sqrt(diag(fit$var))))),
       lower = arr(s$conf.int[, 3]), upper = arr(s$conf.int[, 4]), converged = fit$converged,
       loglik = fit$loglik)
}
cox_block <- function(fit) {
  s <- summary(fit)
  list(coef = arr(coef(fit)), se = arr(sqrt(diag(vcov(fit)))), p = arr(s$coefficients[, ncol(s$coefficients)]),
       lower = arr(s$conf.int[, 3]), upper = arr(s$conf.int[, 4]))
}

ref <- list()
ref$mgus2 <- list(
  cif_progression = cif_block(mg$time, mg$cause, mg$male, c(12, 60, 120, 240, 420)),
  cif_death = cif_block(mg$time, mg$cause, mg$male, c(12, 60, 120, 240, 420), failcode = 2),
  crr_progression_male = crr_block(mg$time, mg$cause, cbind(male = mg$male)),
  crr_progression_male_age = crr_block(mg$time, mg$cause, cbind(male = mg$male, age = mg$age)),
  crr_death_male = crr_block(mg$time, mg$cause, cbind(male = mg$male), failcode = 2),
  cs_cox_progression_male = cox_block(coxph(Surv(time, cause == 1) ~ male, data = mg, ties = "efron")),
  cs_cox_death_male_age = cox_block(coxph(Surv(time, cause == 2) ~ male + age, data = mg, ties = "efron"))
)
ref$pbc <- list(
  cif_death = cif_block(pb$time, pb$status, pb$trt2, c(365, 1825, 3650), failcode = 2),
  cif_transplant = cif_block(pb$time, pb$status, pb$trt2, c(365, 1825, 3650), failcode = 1),
  crr_death_trt = crr_block(pb$time, pb$status, cbind(trt2 = pb$trt2), failcode = 2),
  crr_death_trt_age = crr_block(pb$time, pb$status, cbind(trt2 = pb$trt2, age = pb$age), failcode = 2)
)

# ---- edge cases -----------------------------------------------------------------------------
# Ties at every time: mgus2 in whole years (every event time is shared by many patients).
yr <- ceiling(mg$time / 12)
ref$mgus2_years <- list(
  cif_progression = cif_block(yr, mg$cause, mg$male, c(1, 5, 10, 20)),
  crr_progression_male = crr_block(yr, mg$cause, cbind(male = mg$male)),
  cs_cox_progression_male = cox_block(coxph(Surv(yr, mg$cause == 1) ~ mg$male, ties = "efron"))
)
# No censoring at all (G = 1: the competing failures stay in every risk set).
nc <- mg[mg$cause > 0, ]
ref$mgus2_uncensored <- list(crr_progression_male = crr_block(nc$time, nc$cause, cbind(male = nc$male)))
# Three groups: women, men, anyone over 70 (Gray's test on 2 degrees of freedom).
three <- ifelse(mg$age > 70, "old", ifelse(mg$male == 1, "m", "f"))
ref$mgus2_three_groups <- list(gray = cuminc(mg$time, mg$cause, three)$Tests["1", ])
# No competing events: aml (relapse only); the cumulative incidence is 1 - Kaplan-Meier.
aml2 <- data.frame(time = aml$time, cause = aml$status, arm = as.integer(aml$x == "Nonmaintained"))
ref$aml_no_competing <- list(
  data = list(time = arr(aml2$time), cause = arr(aml2$cause), arm = arr(aml2$arm)),
  cif = cif_block(aml2$time, aml2$cause, aml2$arm, c(12, 24, 36)),
  crr = crr_block(aml2$time, aml2$cause, cbind(arm = aml2$arm))
)
# An arm with no event of the cause of interest (but competing events and censoring).
na <- data.frame(time = c(2, 3, 3, 5, 7, 8, 11, 13, 1, 4, 4, 6, 9, 10, 12, 14),
                 cause = c(1, 2, 1, 0, 1, 2, 0, 1, 2, 0, 2, 0, 2, 0, 2, 0),
                 arm = rep(c(0, 1), each = 8))
ref$arm_without_events <- list(
  data = list(time = arr(na$time), cause = arr(na$cause), arm = arr(na$arm)),
  cif = cif_block(na$time, na$cause, na$arm, c(5, 10, 14))
)
# One arm only: the curve, and no test.
ref$one_arm <- list(cif = cif_block(na$time[na$arm == 0], na$cause[na$arm == 0], na$arm[na$arm == 0], c(5, 10)))

# ---- IPTW on lung ---------------------------------------------------------------------------
# "Exposure" female (sex 2) vs male; propensity on age and ECOG (0, 1, 2+).
lu <- lung[!is.na(lung$ph.ecog), c("time", "status", "sex", "age", "ph.ecog")]
lu$female <- as.integer(lu$sex == 2)
lu$event <- as.integer(lu$status == 2)
lu$ecog <- factor(ifelse(lu$ph.ecog >= 2, "2+", as.character(lu$ph.ecog)), levels = c("0", "1", "2+"))
write.csv(data.frame(time = lu$time, event = lu$event, female = lu$female, age = lu$age,
                     ph_ecog = lu$ph.ecog, ecog = as.character(lu$ecog)),
          "data/lung_iptw.csv", row.names = FALSE)
ps_fit <- glm(female ~ age + ecog, family = binomial, data = lu)
ps <- fitted(ps_fit)
p1 <- mean(lu$female)
w <- ifelse(lu$female == 1, p1 / ps, (1 - p1) / (1 - ps))
ess <- function(x) sum(x)^2 / sum(x^2)
smd <- function(x, wt) {
  a <- lu$female == 1; b <- !a
  s <- sqrt((var(x[a]) + var(x[b])) / 2)
  (weighted.mean(x[a], wt[a]) - weighted.mean(x[b], wt[b])) / s
}
balance <- list(
  age = list(before = smd(lu$age, rep(1, nrow(lu))), after = smd(lu$age, w)),
  ecog_0 = list(before = smd(as.numeric(lu$ecog == "0"), rep(1, nrow(lu))), after = smd(as.numeric(lu$ecog == "0"), w)),
  ecog_1 = list(before = smd(as.numeric(lu$ecog == "1"), rep(1, nrow(lu))), after = smd(as.numeric(lu$ecog == "1"), w)),
  "ecog_2+" = list(before = smd(as.numeric(lu$ecog == "2+"), rep(1, nrow(lu))), after = smd(as.numeric(lu$ecog == "2+"), w))
)
wkm <- function(arm, times) {
  fit <- survfit(Surv(time, event) ~ 1, data = lu[lu$female == arm, ], weights = w[lu$female == arm])
  summary(fit, times = times)$surv
}
cox_w <- coxph(Surv(time, event) ~ female, data = lu, weights = w, robust = TRUE, ties = "efron")
cox_w2 <- coxph(Surv(time, event) ~ female + age, data = lu, weights = w, robust = TRUE, ties = "efron")
robust <- function(fit) {
  s <- summary(fit)
  list(coef = arr(coef(fit)), robust_se = arr(sqrt(diag(fit$var))), naive_se = arr(sqrt(diag(fit$naive.var))),
       p = arr(s$coefficients[, "Pr(>|z|)"]), lower = arr(s$conf.int[, 3]), upper = arr(s$conf.int[, 4]))
}
# A level present in one arm only: ECOG 3 (one man).
lu_all <- lung[!is.na(lung$ph.ecog), ]
sep_warning <- NULL
invisible(withCallingHandlers(
  glm(I(sex == 2) ~ age + factor(ph.ecog), family = binomial, data = lu_all),
  warning = function(w) { sep_warning <<- conditionMessage(w); invokeRestart("muffleWarning") }))
ref$lung_iptw <- list(
  ps_coef = arr(coef(ps_fit)), ps = arr(ps), weights = arr(w),
  weights_min = min(w), weights_max = max(w),
  ess = list("0" = ess(w[lu$female == 0]), "1" = ess(w[lu$female == 1])),
  balance = balance,
  km = list("0" = arr(wkm(0, c(180, 365, 730))), "1" = arr(wkm(1, c(180, 365, 730))), times = arr(c(180, 365, 730))),
  cox_female = robust(cox_w), cox_female_age = robust(cox_w2),
  ecog3_one_arm_warning = if (is.null(sep_warning)) "" else sep_warning
)

# Weights with ties at every time: mgus2 in whole years, arbitrary positive weights.
mgw <- data.frame(time = yr, event = as.integer(mg$cause == 2), male = mg$male, age = mg$age,
                  w = 0.5 + (round(mg$age) %% 7) / 4)
ref$mgus2_years_weighted_cox <- robust(coxph(Surv(time, event) ~ male + age, data = mgw,
                                             weights = w, robust = TRUE, ties = "efron"))
ref$mgus2_years_weighted_km <- list(
  "0" = arr(summary(survfit(Surv(time, event) ~ 1, data = mgw[mgw$male == 0, ], weights = w), times = c(1, 5, 10, 20))$surv),
  "1" = arr(summary(survfit(Surv(time, event) ~ 1, data = mgw[mgw$male == 1, ], weights = w), times = c(1, 5, 10, 20))$surv))

# ---- RMST -----------------------------------------------------------------------------------
rmst <- function(time, event, tau) {
  tab <- summary(survfit(Surv(time, event) ~ 1), rmean = tau)$table
  list(rmean = tab[["rmean"]], se = tab[["se(rmean)"]])
}
ref$rmst <- list(
  lung_male_365 = rmst(lung$time[lung$sex == 1], lung$status[lung$sex == 1] == 2, 365),
  lung_female_365 = rmst(lung$time[lung$sex == 2], lung$status[lung$sex == 2] == 2, 365),
  lung_male_730 = rmst(lung$time[lung$sex == 1], lung$status[lung$sex == 1] == 2, 730),
  lung_female_730 = rmst(lung$time[lung$sex == 2], lung$status[lung$sex == 2] == 2, 730),
  aml_maintained_24 = rmst(aml$time[aml$x == "Maintained"], aml$status[aml$x == "Maintained"], 24),
  aml_nonmaintained_24 = rmst(aml$time[aml$x == "Nonmaintained"], aml$status[aml$x == "Nonmaintained"], 24),
  # tau beyond the last time: the last value of the curve is carried on
  aml_maintained_200 = rmst(aml$time[aml$x == "Maintained"], aml$status[aml$x == "Maintained"], 200)
)
d <- ref$rmst$lung_female_365$rmean - ref$rmst$lung_male_365$rmean
se <- sqrt(ref$rmst$lung_female_365$se^2 + ref$rmst$lung_male_365$se^2)
ref$rmst_difference_lung_365 <- list(difference = d, lower = d - qnorm(0.975) * se,
                                     upper = d + qnorm(0.975) * se, p = 2 * pnorm(-abs(d / se)))
write.csv(data.frame(time = lung$time, event = as.integer(lung$status == 2), sex = lung$sex),
          "data/lung.csv", row.names = FALSE)

# ---- Mantel-Haenszel with a zero cell in every stratum --------------------------------------
mh <- mantelhaen.test(array(c(0, 5, 10, 5, 0, 4, 8, 4), dim = c(2, 2, 2)), correct = FALSE)
ref$mantel_haenszel_zero_cell <- list(tables = list(arr(c(0, 10, 5, 5)), arr(c(0, 8, 4, 4))),
  statistic = unname(mh$statistic), p = mh$p.value, estimate = unname(mh$estimate),
  lower = mh$conf.int[1], upper = mh$conf.int[2])

ref$versions <- list(R = R.version.string, survival = as.character(packageVersion("survival")),
                     cmprsk = as.character(packageVersion("cmprsk")))
writeLines(json(ref), "r/reference.json")
