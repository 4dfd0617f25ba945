/* Loss curves as standalone SVG (no plotting dependency): axes with ticks, a train and a validation polyline. */
#include <math.h>
#include <stdio.h>

#include "bnb-impl.h"
#include "bnb-model.h"

static void polyline(FILE *f, const int64_t *x, const float *y, int64_t n, double x0, double x1, double y0, double y1,
                     const char *color, double width) {
    const double L = 70, R = 780, T = 40, B = 440;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" points=\"", color, width);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) continue;
        double px = L + (R - L) * ((double)x[i] - x0) / (x1 - x0);
        double py = B - (B - T) * ((double)y[i] - y0) / (y1 - y0);
        fprintf(f, "%.1f,%.1f ", px, py);
    }
    fprintf(f, "\"/>\n");
}

bnb_status bnb_plot_loss_svg(const char *path, const char *title, const int64_t *train_x, const float *train_y,
                             int64_t n_train, const int64_t *val_x, const float *val_y, int64_t n_val) {
    if (!path || (n_train > 0 && (!train_x || !train_y)) || (n_val > 0 && (!val_x || !val_y)))
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_plot_loss_svg: NULL argument");
    double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
    for (int s = 0; s < 2; s++) {
        const int64_t *x = s ? val_x : train_x;
        const float *y = s ? val_y : train_y;
        for (int64_t i = 0, n = s ? n_val : n_train; i < n; i++) {
            if (!isfinite(y[i])) continue;
            x0 = fmin(x0, (double)x[i]), x1 = fmax(x1, (double)x[i]);
            y0 = fmin(y0, y[i]), y1 = fmax(y1, y[i]);
        }
    }
    if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + 1;
    y0 = fmax(0, y0 - 0.05 * (y1 - y0));
    FILE *f = fopen(path, "w");
    if (!f) return bnb_fail(BNB_ERR_IO, "%s: cannot create the plot", path);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"500\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"800\" height=\"500\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"400\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">%s</text>\n", title ? title : "loss");
    fprintf(f, "<path d=\"M70 40 V440 H780\" stroke=\"black\" fill=\"none\"/>\n");
    for (int i = 0; i <= 5; i++) {
        double yv = y0 + (y1 - y0) * i / 5, py = 440 - 400.0 * i / 5;
        double xv = x0 + (x1 - x0) * i / 5, px = 70 + 710.0 * i / 5;
        fprintf(f, "<line x1=\"66\" x2=\"780\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", py, py);
        fprintf(f, "<text x=\"62\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", py + 4, yv);
        fprintf(f, "<text x=\"%.1f\" y=\"458\" text-anchor=\"middle\">%.0f</text>\n", px, xv);
    }
    fprintf(f, "<text x=\"425\" y=\"485\" text-anchor=\"middle\">step</text>\n");
    if (n_train > 0) polyline(f, train_x, train_y, n_train, x0, x1, y0, y1, "#1f77b4", 1.2);
    if (n_val > 0) polyline(f, val_x, val_y, n_val, x0, x1, y0, y1, "#d62728", 2.0);
    fprintf(f, "<rect x=\"620\" y=\"50\" width=\"150\" height=\"46\" fill=\"white\" stroke=\"#999\"/>\n"
               "<line x1=\"630\" x2=\"660\" y1=\"66\" y2=\"66\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
               "<text x=\"668\" y=\"70\">train loss</text>\n"
               "<line x1=\"630\" x2=\"660\" y1=\"86\" y2=\"86\" stroke=\"#d62728\" stroke-width=\"2\"/>"
               "<text x=\"668\" y=\"90\">validation loss</text>\n</svg>\n");
    return fclose(f) == 0 ? BNB_OK : bnb_fail(BNB_ERR_IO, "%s: write failed", path);
}
