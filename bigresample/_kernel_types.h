/* _kernel_impl.h and _axis_impl.h for every window type, with the output
 * type OUT_T/OUT_NAME that _kernel.c has defined: the window holds the
 * input's own samples (orders 0 and 1, any integer or float type) or float64
 * coefficients. */

#define IN_T uint8_t
#define IN_NAME u1
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#define IN_T int8_t
#define IN_NAME i1
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#define IN_T uint16_t
#define IN_NAME u2
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#define IN_T int16_t
#define IN_NAME i2
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#define IN_T uint32_t
#define IN_NAME u4
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#define IN_T int32_t
#define IN_NAME i4
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#define IN_T uint64_t
#define IN_NAME u8
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#define IN_T int64_t
#define IN_NAME i8
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#define IN_T float
#define IN_NAME f4
#define IN_FLOAT 1
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
#undef IN_FLOAT
#define IN_T double
#define IN_NAME f8
#include "_kernel_impl.h"
#include "_axis_impl.h"
#undef IN_T
#undef IN_NAME
