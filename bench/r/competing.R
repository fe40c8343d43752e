# SAP 12-14 in R on the frame bench/worker.py stats_compare wrote, as ImmunoReg computes them
# (analytics/comparison.py): Rscript bench/r/competing.R DIR REPEATS -> one JSON line of timings.
# cmprsk's crr loops over pairs of patients: it is timed up to CRR_MAX_ROWS rows only (about
# 50 s at 10,000 here; it does not finish in 15 minutes at 100,000). The robust (sandwich)
# variance of survival's weighted coxph grows as fast: IPTW is timed up to IPTW_MAX_ROWS
# (31 s at 100,000; at 1,000,000 this script had not finished after 18 minutes).
suppressPackageStartupMessages({library(survival); library(cmprsk)})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; repeats <- as.integer(args[2])
CRR_MAX_ROWS <- 10000
IPTW_MAX_ROWS <- 100000
d <- read.csv(file.path(dir, "frame.csv"), stringsAsFactors = FALSE)
d$months <- d$pfs_days / 30.4375
d$os_months <- d$os_days / 30.4375
for (col in c("sex", "ph_status", "disease_burden", "relapse_group", "prior_hsct")) {
  v <- as.character(d[[col]]); v[is.na(v) | v == ""] <- "missing"; d[[col]] <- factor(v)
}

competing_risks <- function() {
  ci <- cuminc(d$months, d$pfs_cause, d$arm)  # CIF per arm and cause, Gray's test per cause
  timepoints(ci, c(12, 24))
  for (k in 1:2) summary(coxph(Surv(months, pfs_cause == k) ~ car_t, data = d, ties = "efron"))
}

fine_gray <- function() {
  for (k in 1:2) summary(crr(d$months, d$pfs_cause, cbind(car_t = d$car_t), failcode = k))
}

iptw <- function() {
  ps <- fitted(glm(car_t ~ age + sex + ph_status + disease_burden + relapse_group + prior_hsct,
                   family = binomial, data = d))
  p1 <- mean(d$car_t)
  w <- ifelse(d$car_t == 1, p1 / ps, (1 - p1) / (1 - ps))
  for (ep in c("months", "os_months")) {
    ev <- if (ep == "months") d$pfs_event else d$os_event
    for (a in 0:1) {
      rows <- d$car_t == a
      summary(survfit(Surv(d[[ep]][rows], ev[rows]) ~ 1, weights = w[rows]), times = c(12, 24))
    }
    summary(coxph(Surv(d[[ep]], ev) ~ d$car_t, weights = w, robust = TRUE, ties = "efron"))
  }
}

rmst <- function() {
  for (ep in c("months", "os_months")) {
    ev <- if (ep == "months") d$pfs_event else d$os_event
    for (tau in c(12, 24)) for (a in 0:1) {
      rows <- d$car_t == a
      print(survfit(Surv(d[[ep]][rows], ev[rows]) ~ 1), rmean = tau) |> capture.output() |> invisible()
    }
  }
}

timeit <- function(fn) {
  runs <- sapply(seq_len(repeats), function(i) system.time(fn())[["elapsed"]])
  sprintf('{"median_s": %.4f, "runs_s": [%s]}', median(runs), paste(sprintf("%.4f", runs), collapse = ", "))
}
fg <- if (nrow(d) <= CRR_MAX_ROWS) timeit(fine_gray) else
  sprintf('{"median_s": null, "not_run": "crr takes more than 15 minutes beyond %d rows"}', CRR_MAX_ROWS)
ip <- if (nrow(d) <= IPTW_MAX_ROWS) timeit(iptw) else
  sprintf('{"median_s": null, "not_run": "the robust weighted Cox takes more than 15 minutes beyond %d rows"}', IPTW_MAX_ROWS)
cat(sprintf('{"competing_risks": %s, "fine_gray": %s, "iptw": %s, "rmst": %s, "rows": %d, "cmprsk_version": "%s"}\n',
            timeit(competing_risks), fg, ip, timeit(rmst), nrow(d), packageVersion("cmprsk")))
