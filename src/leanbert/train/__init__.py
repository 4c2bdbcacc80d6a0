"""Training: pretraining, distillation and fine-tuning, thin over transformers.Trainer."""
