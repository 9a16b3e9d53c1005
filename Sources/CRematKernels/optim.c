// Fused optimizer updates: one pass over parameter, gradient and state per step.
#include "remat_optim.h"
#include "remat_multiversion.h"
#include <math.h>

REMAT_MULTIVERSION
void remat_adamw_step_f32(float *p, const float *g, float *m, float *v, long begin, long end,
                          float lr, float b1, float b2, float eps, float wd, float bc1, float bc2) {
    const float decay = 1.0f - lr * wd;
    const float step = lr / bc1;
    const float rbc2 = 1.0f / sqrtf(bc2);
    for (long i = begin; i < end; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

REMAT_MULTIVERSION
void remat_sgd_step_f32(float *p, const float *g, float *buf, long begin, long end, float lr,
                        float momentum, float dampening, float wd, int nesterov, int first_step) {
    for (long i = begin; i < end; i++) {
        float d = g[i] + wd * p[i];
        if (momentum != 0.0f) {
            float b = first_step ? d : momentum * buf[i] + (1.0f - dampening) * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}

REMAT_MULTIVERSION
double remat_sum_squares_f32(const float *x, long begin, long end) {
    double acc[8] = {0};
    long i = begin;
    for (; i + 8 <= end; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    double s = 0;
    for (; i < end; i++) s += (double)x[i] * (double)x[i];
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}
