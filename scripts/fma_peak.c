// Dev-only: the peak f32 FMA rate of this CPU (AVX2), 1 and 2 threads, for docs/cpu-speed-notes.md.
// gcc -O3 -funroll-all-loops -mavx2 -mfma scripts/fma_peak.c -o /tmp/fma_peak -lpthread && /tmp/fma_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#define N 12
static double secs(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void* run(void* p){ __m256 a[N]; __m256 b=_mm256_set1_ps(0.999999f), c=_mm256_set1_ps(1e-7f);
 for(int i=0;i<N;i++) a[i]=_mm256_set1_ps(i);
 long iters=(long)p;
 for(long k=0;k<iters;k++){ for(int i=0;i<N;i++) a[i]=_mm256_fmadd_ps(a[i],b,c);}
 float s=0; for(int i=0;i<N;i++){float o[8];_mm256_storeu_ps(o,a[i]);s+=o[0];} static volatile float sink; sink=s; return 0;}
int main(){ long it=400000000L; for(int th=1;th<=2;th++){ pthread_t t[2]; double t0=secs(); for(int i=0;i<th;i++) pthread_create(&t[i],0,run,(void*)it); for(int i=0;i<th;i++) pthread_join(t[i],0); double dt=secs()-t0; printf("%d threads: %.1f GFLOP/s\n", th, th*(double)it*N*8*2/dt/1e9);} }
