#ifndef REMAT_OPTIM_H
#define REMAT_OPTIM_H

/// One AdamW step over elements [begin, end) (decoupled weight decay, PyTorch semantics):
///   p -= lr·wd·p;  m = b1·m + (1−b1)·g;  v = b2·v + (1−b2)·g²;
///   p -= lr · (m / bc1) / (sqrt(v / bc2) + eps)     with bc1 = 1−b1^t, bc2 = 1−b2^t.
void remat_adamw_step_f32(float *p, const float *g, float *m, float *v, long begin, long end,
                          float lr, float b1, float b2, float eps, float wd, float bc1, float bc2);

/// One SGD step over [begin, end) (PyTorch semantics, coupled weight decay):
///   d = g + wd·p;  if momentum: buf = momentum·buf + (1−dampening)·d (buf = d on the first step),
///   d = nesterov ? d + momentum·buf : buf;  p -= lr·d.   `buf` may be NULL when momentum is 0.
void remat_sgd_step_f32(float *p, const float *g, float *buf, long begin, long end, float lr,
                        float momentum, float dampening, float wd, int nesterov, int first_step);

/// Sum of squares of x[begin, end), accumulated in double.
double remat_sum_squares_f32(const float *x, long begin, long end);

#endif
