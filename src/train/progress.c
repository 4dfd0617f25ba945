/* A one-line progress bar on stderr: step, loss, tokens/s and ETA. */
#include <stdio.h>

#include "bnb-impl.h"
#include "bnb-model.h"

void bnb_train_progress(int64_t step, int64_t steps, float loss, double tokens_per_s, double elapsed_s,
                        double eta) {
    const int width = 30;
    double frac = steps > 0 ? (double)step / (double)steps : 1.0;
    int fill = (int)(frac * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] step %lld/%lld  loss %.4f  %.0f tok/s  elapsed %d:%02d  ETA %d:%02d ", bar,
            (long long)step, (long long)steps, (double)loss, tokens_per_s, (int)(elapsed_s / 60), (int)elapsed_s % 60,
            (int)(eta / 60), (int)eta % 60);
    if (step >= steps) fputc('\n', stderr);
    fflush(stderr);
}
