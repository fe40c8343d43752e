# The same statistics as bench/worker.py stats_compare, with R's survival package, on the frame
# it wrote: Rscript bench/r/survival.R DIR REPEATS -> one JSON line of timings on stdout.
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; repeats <- as.integer(args[2])
d <- read.csv(file.path(dir, "frame.csv"), stringsAsFactors = FALSE)
d$disease_burden <- factor(d$disease_burden)
d$relapse_group <- factor(d$relapse_group)
d$id <- seq_len(nrow(d))
arms <- sort(unique(d$arm))

km_logrank_cox <- function() {
  for (ep in c("pfs", "os")) {
    f <- as.formula(sprintf("Surv(%s_days, %s_event) ~ 1", ep, ep))
    for (a in arms) {
      fit <- survfit(f, data = d[d$arm == a, ], conf.type = "log-log")
      s <- summary(fit, times = c(0, 182.625, 365.25, 730.5), extend = TRUE)
    }
    survdiff(as.formula(sprintf("Surv(%s_days, %s_event) ~ arm", ep, ep)), data = d)
    summary(coxph(as.formula(sprintf("Surv(%s_days, %s_event) ~ car_t", ep, ep)), data = d, ties = "efron"))
    summary(coxph(as.formula(sprintf("Surv(%s_days, %s_event) ~ car_t + disease_burden + relapse_group", ep, ep)),
                  data = d, ties = "efron"))
  }
}

counting <- function(x, col) {
  # one row per patient, split at the transplant day (transplanted from then on), as
  # analytics.stats.transplant.counting_process does
  tx <- x[[col]]
  before <- !is.na(tx) & tx > 0 & tx < x$pfs_days
  at0 <- !is.na(tx) & tx <= 0
  r1 <- data.frame(id = x$id, start = 0, stop = ifelse(before, tx, x$pfs_days),
                   event = ifelse(before, 0, x$pfs_event), transplanted = as.integer(at0), arm = x$arm)
  r2 <- data.frame(id = x$id[before], start = tx[before], stop = x$pfs_days[before],
                   event = x$pfs_event[before], transplanted = 1L, arm = x$arm[before])
  rows <- rbind(r1, r2)
  rows[rows$stop > rows$start, ]
}

td_cox <- function() {
  for (col in c("any_hsct_day", "ucbt_day")) {
    for (a in arms) {
      rows <- counting(d[d$arm == a, ], col)
      summary(coxph(Surv(start, stop, event) ~ transplanted, data = rows, ties = "efron"))
    }
    rows <- counting(d, col)
    summary(coxph(Surv(start, stop, event) ~ transplanted + arm, data = rows, ties = "efron"))
  }
}

timeit <- function(fn) {
  runs <- sapply(seq_len(repeats), function(i) system.time(fn())[["elapsed"]])
  list(median_s = median(runs), runs_s = runs)
}
k <- timeit(km_logrank_cox); t <- timeit(td_cox)
fmt <- function(p) sprintf('{"median_s": %.4f, "runs_s": [%s]}', p$median_s, paste(sprintf("%.4f", p$runs_s), collapse = ", "))
cat(sprintf('{"km_logrank_cox": %s, "td_cox": %s, "total_median_s": %.4f, "rows": %d, "r_version": "%s", "survival_version": "%s"}\n',
            fmt(k), fmt(t), k$median_s + t$median_s, nrow(d), R.version$version.string, packageVersion("survival")))
